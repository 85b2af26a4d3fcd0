# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both set up their own virtual environment with every dependency first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The `onnx` provider's model: a build artifact of `make model`, never committed.
MODEL_DIR := build/model
MODEL := $(MODEL_DIR)/model.onnx

.PHONY: install demo test lint typecheck check eval-bbc clean model model-layer bench

install: $(STAMP) $(MODEL)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build; anything else would pull CUDA packages.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[local,dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/autotag run demo/drive --workspace demo --out out/demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy
	# one module per run: both handlers are called app.py
	$(BIN)/mypy functions/embed/app.py
	$(BIN)/mypy functions/cluster/app.py

check: lint typecheck test

# all-MiniLM-L6-v2 exported once with torch, optimised and quantised to int8, for onnxruntime.
model: $(MODEL)

$(MODEL): $(STAMP) layers/shared/autotag/onnx_export.py
	$(BIN)/python -m autotag.onnx_export --out $(MODEL_DIR)

# A Lambda layer for the `onnx` provider: python/ (onnxruntime, tokenizers for python3.12 x86_64;
# Lambda's Amazon Linux 2023 takes manylinux_2_28 wheels) and model/ (mounted at /opt/model;
# the functions need AUTOTAG_ONNX_MODEL_DIR=/opt/model).
model-layer: $(MODEL)
	rm -rf build/model-layer
	$(BIN)/python -m pip install --quiet --no-deps --target build/model-layer/python \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.12 --only-binary=:all: \
		-r layers/model/requirements.txt
	mkdir -p build/model-layer/model
	cp $(MODEL_DIR)/model.onnx $(MODEL_DIR)/tokenizer.json $(MODEL_DIR)/export.json build/model-layer/model/

# Speed, size and memory figures (about 15 minutes on 2 cores): benchmarks/results/.
bench: install
	$(BIN)/python -m benchmarks.bench --corpus ../shared/corpora/bbc-news

# NMI of the categories against the labelled BBC News corpus (research use, read in place).
eval-bbc: install
	$(BIN)/python benchmarks/nmi.py ../shared/corpora/bbc-news

clean:
	rm -rf $(VENV) .autotag out
