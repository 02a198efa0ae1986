# mibpcert: one-command set-up, demo, tests and benchmarks.
#   make demo   creates .venv (once) and runs the two-moons demo
#   make test   creates .venv (once) and runs the whole test suite (slow tests included), as CI does
#   make test-fast  the quick loop: every test not marked slow (end-to-end soundness runs are slow)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mibpcert-installed

.PHONY: venv demo test test-fast bench clean-venv

venv: $(STAMP)

# Runs once, and again when pyproject.toml changes (e.g. a new extra): the stamp is only created
# after a successful install (delete it or `make clean-venv` to reinstall).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "error: Python >= 3.10 is needed, $(PYTHON) is " + sys.version.split()[0] + "; run e.g. make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[solvers,test,ray]'
	touch $(STAMP)

demo: venv
	$(BIN)/mibpcert run examples/two_moons.toml

test: venv
	$(BIN)/python -m pytest -q --durations=15

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

# every script in benchmarks/ (common.py holds their shared helpers), then every package
# benchmarks/<name>/ with a __main__.py, run as a module from the repository root
bench: venv
	@set -e; found=0; for f in benchmarks/*.py; do \
		[ -f "$$f" ] || continue; [ "$$f" != benchmarks/common.py ] || continue; found=1; \
		echo "== $$f"; $(BIN)/python "$$f"; \
	done; for d in benchmarks/*/__main__.py; do \
		[ -f "$$d" ] || continue; found=1; m=$$(dirname "$$d" | tr / .); \
		echo "== python -m $$m"; $(BIN)/python -m "$$m"; \
	done; [ $$found = 1 ] || echo "no benchmark scripts in benchmarks/"

clean-venv:
	rm -rf $(VENV)
