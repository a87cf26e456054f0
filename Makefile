# Every target creates/uses .venv by itself; no global installs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The exact versions (with hashes) the suite passed with; `make lock` refreshes it.
LOCK   := requirements.lock
LATEST ?= .venv-latest

.PHONY: venv demo test test-fast test-latest lint typecheck bench bench-quick chaos lock clean

# Locked install: every dependency from $(LOCK), hashes required, nothing resolved at
# install time; then the project itself, editable, with no dependencies of its own.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/s3sync demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -x tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src tests || true
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick $(BENCH_ARGS)

# The newest releases pyproject.toml allows, in a venv of their own: shows the next drift
# before a user meets it. Prints the versions it used.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade -e '.[dev]'
	$(LATEST)/bin/python -m pip freeze --exclude-editable | tee $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -n 2 $(PYTEST_ARGS)

# Re-resolve the newest allowed releases into $(LOCK) (hashes for every file of each).
lock: $(STAMP)
	$(PY) -m piptools compile -q --upgrade --extra dev --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml
	$(PY) scripts/lock_tidy.py $(LOCK)

chaos: $(STAMP)
	S3SYNC_CHAOS_SEEDS=$${S3SYNC_CHAOS_SEEDS:-50} S3SYNC_MODEL_EXAMPLES=$${S3SYNC_MODEL_EXAMPLES:-200} $(PY) -m pytest -q tests/faults -k 'chaos or test_model' $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
