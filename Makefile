# Two commands for a newcomer: `make demo` and `make test`.
# Both create the virtual environment and install what they need: `make demo`
# only Vestnik and its dependencies, `make test` the `test` extra as well.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# The demo's port: `make demo PORT=8001` when 8000 is taken.
PORT   ?= 8000
# Two test processes: most tests wait on PostgreSQL, RabbitMQ or a child process, so two
# overlap well on two cores (7.9 min instead of 15.5 for the whole suite).
TEST_WORKERS ?= 2

.PHONY: demo test lint bench mutate clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vestnik needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# -qq: the editable install's notice ("be careful with folders named like the
# package") is setuptools' information, not a problem; errors still show.
# client/: the light vestnik-client distribution, installed beside Vestnik for its tests
$(STAMP): pyproject.toml client/pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -qq -e '.[test]' -e client/
	@touch $(STAMP) $(DEMO_STAMP)

# The demo needs no test tools: a fresh clone's `make demo` skips Playwright,
# pytest and ruff.  A venv that `make test` made already has everything.
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -qq -e .
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/vestnik demo --port $(PORT) --retry-hint 'make demo PORT={port}'

test: $(STAMP)
	$(BIN)/ruff check .
	# --durations: the slowest tests, printed in every run, are where the 12-minute budget goes
	# worksteal: a worker that runs out of tests takes pending ones from the other (a long test near the end
	# no longer leaves one worker idle while the other works through its queue)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Mutation testing of the core pure modules (mutmut 3), one module at a time; slow, so not part of
# `make test`.  `make mutate MODULES=shared/bounds.py` for one; docs/testing.md has the figures.
mutate: $(STAMP)
	$(BIN)/python -m tests.mutate $(MODULES)

# The admin's catalogues (webapp/translations): new marked strings into the .po files, then the
# .mo files that are committed beside them (a clean clone needs no build step to have them).
translations: $(STAMP)
	mkdir -p var
	$(BIN)/pybabel extract -F babel.cfg -k _l --no-location --omit-header -o var/messages.pot .
	$(BIN)/pybabel update -i var/messages.pot -d webapp/translations --width 120
	$(BIN)/pybabel compile -d webapp/translations --statistics

clean:
	rm -rf $(VENV) var .pytest_cache
