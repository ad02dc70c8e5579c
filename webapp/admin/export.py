"""CSV export: streamed, bounded memory, safe to open in a spreadsheet.

- **Streamed**: rows come from a server-side cursor (``yield_per``: PostgreSQL keeps the result,
  the app holds one batch) and leave as a chunked Flask response, a batch of rows per chunk, so
  1,000,000 rows cost what a few thousand do (measured in ``bench/history_export.py``).
- **Formula injection**: a cell a spreadsheet would read as a formula (starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``, as OWASP recommends;
  a client's name ``=HYPERLINK(...)`` stays text.
- **Excel and Cyrillic**: the file starts with a UTF-8 byte order mark, so Excel reads it as
  UTF-8, not as the system's code page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from flask import Response, stream_with_context

#: rows fetched per round trip and written per chunk
BATCH = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """What to write for one value: text that a spreadsheet would evaluate is made inert."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]], batch: int = BATCH) -> Iterator[str]:
    """The CSV text in chunks of ``batch`` rows (the first chunk starts with the BOM and the header)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    buf.write("\ufeff")
    writer.writerow(header)
    n = 0
    try:
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])
            n += 1
            if n % batch == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # a client that went away: the cursor is closed now, not at garbage collection
            close()


def stream_query(query: Any, batch: int = BATCH) -> Iterator[Sequence[Any]]:
    """The rows of a SQLAlchemy query or select, fetched ``batch`` at a time from a server-side cursor."""
    if hasattr(query, "yield_per"):  # a legacy Query (Flask-Admin's)
        yield from query.execution_options(stream_results=True).yield_per(batch)
        return
    raise TypeError("stream_query takes a Query; use stream_select for a select()")


def stream_select(session: Any, stmt: Any, batch: int = BATCH) -> Iterator[Sequence[Any]]:
    result = session.execute(stmt.execution_options(stream_results=True, yield_per=batch))
    for part in result.partitions():
        yield from part


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A streamed ``text/csv`` download (the request context, and its session, live while it streams)."""
    return Response(
        stream_with_context(csv_chunks(header, rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "X-Content-Type-Options": "nosniff"},
    )
