"""The migrations build exactly the schema the models describe, on both backends,
and go down and up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vestnik.shared.db import make_engine
from vestnik.shared.migrate import alembic_config, upgrade
from vestnik.shared.models import Base


def schema_diff(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_models(db_url):
    engine = make_engine(db_url)  # the fixtures' databases are migrated to head
    assert schema_diff(engine) == []


@pytest.mark.parametrize("target", ["0001"])
def test_downgrade_and_upgrade_again(db_url, target):
    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)
    upgrade(engine)
    assert schema_diff(engine) == []
