# Everything a fresh machine needs, from nothing: `make demo` and `make test` set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast reliability-long lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch is pinned to the CPU wheel of this machine kind in constraints.txt; the library's
	@# own requirements stay ranges.
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/pixeldcn demo

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not server and not slow"

# Long form of tests/test_reliability.py (~10 minutes): 16-client soak, 100 writer kills; figures in reliability.json.
reliability-long: setup
	PIXELDCN_RELIABILITY=long PIXELDCN_RELIABILITY_REPORT=reliability.json $(BIN)/python -m pytest tests/test_reliability.py -q -s

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
