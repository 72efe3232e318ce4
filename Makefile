# The two commands of the README.  Both create .venv (Python 3.11) and install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## the main job on the bundled data: train TRIM-Agg per budget, export, evaluate against every baseline
demo: $(STAMP)
	$(PY) -m trim_rl.demo --out reports/demo

## the whole test suite
test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) reports build *.egg-info
