# Stockade: `make run` starts the server, `make test` runs every check. Both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export STOCKADE_DATA_DIR ?= $(CURDIR)/data
# What a test run keeps to be looked at (screenshots of every UI page at phone and desktop width).
export STOCKADE_TEST_ARTIFACTS_DIR ?= $(CURDIR)/test-artifacts

.PHONY: install run test lint unit fault bench bench-quick clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Compiled bytecode: uv installs none, and without it every start compiles thousands of modules
# (a second `make run` took 7.3 s to serve, 3.1 s compiled). The project's own modules (an
# editable install) are compiled too; Python recompiles any that change.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

$(VENV)/.compiled: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q -j 0 src $(VENV)/lib/python*/site-packages > /dev/null
	touch $@

install: $(VENV)/.installed $(VENV)/.compiled

run: install
	$(VENV)/bin/stockade serve

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	STOCKADE_DATABASE_URL=sqlite:///$(CURDIR)/.lintcheck.db $(VENV)/bin/stockade db check; rm -f .lintcheck.db*

# The run's own PostgreSQL database (scripts/test-env) is dropped when the run ends, however it ends.
# Four workers on two cores: most functional tests wait on live servers, subprocesses and browsers
# (with three, a quarter of the CPU stayed idle). STOCKADE_TEST_CLUSTER=1: the PostgreSQL leg of the
# functional suite is the cluster configuration (README, Development).
test: install lint
	eval "$$(scripts/test-env)" \
	  && trap 'scripts/test-env --drop "$${STOCKADE_TEST_PG_URL-}"' EXIT && trap 'exit 130' INT TERM \
	  && STOCKADE_TEST_CLUSTER=1 $(VENV)/bin/pytest -n 4 --dist loadgroup --durations=40 tests

unit: install
	$(VENV)/bin/pytest tests/unit

# The fault suite (docs/fault-suite.md): a cluster of real processes, one killed with SIGKILL per
# trial. Needs STOCKADE_TEST_PG_URL (and redis-server); CI runs 1 trial in `make test`.
# Replay a failed trial: STOCKADE_FAULT_SEED=<its seed> STOCKADE_FAULT_TRIALS=1 make fault
fault: install
	STOCKADE_FAULT_TRIALS=$${STOCKADE_FAULT_TRIALS:-50} STOCKADE_FAULT_CLIENTS=$${STOCKADE_FAULT_CLIENTS:-200} \
	  $(VENV)/bin/pytest -s tests/fault

bench: install
	$(VENV)/bin/python benchmarks/run_all.py

# Serving, downloads, ingest, publication and startup side by side with their references, small
# inputs: under 5 minutes, for checking a change on these paths the same day.
bench-quick: install
	$(VENV)/bin/python benchmarks/run_all.py --quick

clean:
	rm -rf .venv .tools data .pytest_cache .mypy_cache .ruff_cache test-artifacts
