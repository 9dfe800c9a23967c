# Two commands on a fresh machine:
#   make run    creates .venv, installs the pinned environment, runs prepare -> train -> export -> eval on
#               domain.jsonl with the auto-chosen model (Mistral 7B 4-bit on a CUDA GPU, else the embedded
#               SmolLM2-135M on CPU); the last line printed is the JSON score.
#   make test   installs the same environment plus the test tools, then runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ARGS   ?=

.PHONY: install run test notebooks clean

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -r requirements.lock
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --no-deps -e .
	$(BIN)/python -m unslothify.machine.runtime xformers
	$(BIN)/python -m unslothify setup-gguf || echo "llama.cpp's GGUF converter could not be fetched: GGUF export will say how to get it."
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m unslothify run $(ARGS)

# Test tools: llama.cpp (llama-cpp-python builds from source, ~5 min on 2 cores, cached by pip afterwards)
# for the GGUF round trip (the converter itself comes with `make install`), TensorBoard (the optional tracker extra) for the report_to
# test, wandb where it installs (its offline test is skipped otherwise), and Debian's Chromium for the
# browser test.
$(TEST_STAMP): $(STAMP) requirements-trackers.txt
	$(BIN)/python -m pip install -r requirements-trackers.txt
	$(BIN)/python -m pip install wandb==0.31.0 || echo "wandb did not install: its offline test will be skipped."
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --no-deps llama-cpp-python==0.3.36 diskcache==5.6.3
	@[ -x /usr/bin/chromium ] || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "Chromium not installed: the browser test will be skipped."
	touch $@

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -v --durations=15 $(ARGS)

notebooks: $(STAMP)
	$(BIN)/python -m scripts.build_notebooks

clean:
	rm -rf $(VENV) runs .pytest_cache
