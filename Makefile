# Everything a fresh machine needs, from nothing: `make demo` and `make test` set up .venv first.
PYTHON ?= python3
# Where the CPU build of torch comes from (empty: pip's configuration, as on the project's machines).
TORCH_INDEX ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov validates the Kubernetes manifests (tests/test_deploy_manifests.py) from its own
# environment: installed beside the project's, it would downgrade boto3.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: setup checkov-venv demo test test-fast reliability-long lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# constraints.txt pins torch's version; the CPU build comes from TORCH_INDEX when set (on a
	@# machine whose pip has no local CPU wheel: TORCH_INDEX=https://download.pytorch.org/whl/cpu),
	@# else from pip's own configuration. The library's own requirements stay ranges.
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet -c constraints.txt --index-url $(TORCH_INDEX) torch)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

setup: $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov>=3.2,<4"
	touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP)

demo: setup
	$(BIN)/pixeldcn demo

# Two workers, one test file each at a time (--dist loadfile: a file's module fixtures and servers
# stay in one process): the suite waits on servers as much as it computes.
PYTEST_WORKERS ?= 2

test: setup checkov-venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=30

test-fast: setup
	$(BIN)/python -m pytest -q -m "not server and not slow"

# Long form of tests/test_reliability_*.py (~10 minutes): 16-client soak, 100 writer kills; figures in reliability.json.
reliability-long: setup
	PIXELDCN_RELIABILITY=long PIXELDCN_RELIABILITY_REPORT=reliability.json $(BIN)/python -m pytest tests/test_reliability_*.py -q -s

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
