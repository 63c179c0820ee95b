# Set-up and everyday commands. `make serve` and `make test` each create .venv and install
# everything first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_CPP_VERSION := 0.3.36

# llama-cpp-python is built from source. On x86-64 Linux it is built for this CPU minus AMX:
# llama.cpp's AMX kernels crash on the embedded model's Q4_1 weights. Set CMAKE_ARGS yourself
# for other builds (e.g. CMAKE_ARGS="-DGGML_CUDA=on"). Built wheels are kept per CMAKE_ARGS in
# WHEELHOUSE, so a fresh checkout does not compile again.
ifeq ($(shell uname -s)-$(shell uname -m),Linux-x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif
WHEELHOUSE ?= $(HOME)/.cache/agentport/wheels
# The MLX engine's extra where MLX has wheels: Linux x86-64 (CPU) and Apple Silicon (Metal).
EXTRAS := test
ifneq ($(filter Linux-x86_64 Darwin-arm64,$(shell uname -s)-$(shell uname -m)),)
EXTRAS := test,mlx
endif
WHEEL_KEY := $(shell printf '%s' "$(CMAKE_ARGS)" | $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])")
WHEEL_DIR := $(WHEELHOUSE)/$(WHEEL_KEY)

.PHONY: install serve test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if ! ls $(WHEEL_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (about 6 minutes on 2 cores)"; \
		CMAKE_ARGS="$(CMAKE_ARGS)" $(BIN)/python -m pip wheel --no-deps --no-cache-dir \
			llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEEL_DIR); \
	fi
	$(BIN)/python -m pip install --quiet --find-links $(WHEEL_DIR) \
		--only-binary llama-cpp-python -e '.[$(EXTRAS)]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/agentport serve

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python -m agentport bench decode

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
