# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
TESTSTAMP = $(VENV)/.installed-test

.PHONY: demo test stress install install-all bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The tests also exercise the optional extras: Ray (Downpour), TensorBoard logging, ONNX export.
$(TESTSTAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,distributed,tensorboard,export]'
	touch $(TESTSTAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/visionnets demo

test: $(TESTSTAMP)
	$(PY) -m pytest -q

# The whole suite 3 times with every core loaded by processes of this session (LOAD=0: quiet).
stress: $(TESTSTAMP)
	tests/stress.sh 3

# All extras (Ray, TensorBoard, JAX for the layer benchmark).
install-all: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,distributed,tensorboard,export,bench]'

clean:
	rm -rf $(VENV) runs .pytest_cache
