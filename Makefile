# Two commands on a fresh machine with Python 3.11:  `make up`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: up test bench clean

# torch==2.13.0 first: a CPU build that pip finds locally here; pyproject's range
# then installs nothing more, so pip never downloads a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

up: $(VENV)/.installed
	$(VENV)/bin/omnimind up

# Lint and type checks first (seconds), then the suite. CI (.ci/run) runs this target.
test: $(VENV)/.installed
	$(PY) -m ruff check
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/predict_latency.py

clean:
	rm -rf $(VENV) .omnimind
