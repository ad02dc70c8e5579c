# Two commands for a newcomer: `make demo` and `make test`.
# Both create the virtual environment and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two test processes: most tests wait on PostgreSQL, RabbitMQ or a child process, so two
# overlap well on two cores (7.9 min instead of 15.5 for the whole suite).
TEST_WORKERS ?= 2

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vestnik needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e client/  # client/: the light vestnik-client distribution
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vestnik demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache
