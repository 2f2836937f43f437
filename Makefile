# Sparsity Lab. `make run` serves the app with a worker; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run cluster worker test gpu lint bench clean

$(STAMP): requirements.txt requirements-bundled.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-bundled.txt
	touch $(STAMP)

install: $(STAMP)

run: install  ## worker + app on http://localhost:8501 (SQLite under ./data); Ctrl-C stops both
	$(PY) -m sparsity_core serve --port 8501

cluster: install  ## PostgreSQL + Ray head + Ray-executor worker + app, all on loopback; Ctrl-C stops them
	$(PY) -m sparsity_core serve --port 8501 --cluster

worker: install
	$(PY) -m sparsity_core worker

test: install  ## every test, the browser test included (needs /usr/bin/chromium)
	$(PY) -m ruff check .
	$(PY) -m pytest

gpu: install  ## on a CUDA machine: the GPU tests, then the GPU kernel sweep (bundles in ./bundles)
	$(PY) -m pytest -m cuda -rs
	$(PY) benchmarks/kernels_cuda.py --out bundles

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) benchmarks/pruning_quality.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
