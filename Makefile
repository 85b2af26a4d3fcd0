# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both set up their own virtual environment with every dependency first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The `onnx` provider's model: a build artifact of `make model`, never committed.
MODEL_DIR := build/model
MODEL := $(MODEL_DIR)/model.onnx
# The labelled research corpora, read in place: AUTOTAG_CORPORA if set, else beside the
# checkout, else /work/shared/corpora (as tests/conftest.py looks for them).
CORPORA ?= $(or $(AUTOTAG_CORPORA),$(firstword $(wildcard ../shared/corpora /work/shared/corpora)),../shared/corpora)

.PHONY: install demo test lint typecheck check eval-bbc clean tools template-check build bench-quality chromium model model-layer bench

install: $(STAMP) $(MODEL)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# First, and pinned to the CPU build: any other version would pull CUDA packages.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[local,dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/autotag run demo/drive --workspace demo --out out/demo

test: install chromium
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy
	# one module per run: every handler is called app.py
	$(BIN)/mypy functions/embed/app.py
	$(BIN)/mypy functions/cluster/app.py
	$(BIN)/mypy functions/migrate/app.py
	$(BIN)/mypy functions/reprocess/app.py

check: lint typecheck test

# all-MiniLM-L6-v2 exported once with torch==2.13.0, optimised and quantised to int8, for onnxruntime.
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
	$(BIN)/python -m benchmarks.bench --corpus $(CORPORA)/bbc-news

# NMI of the categories against the labelled BBC News corpus (research use, read in place).
eval-bbc: install
	$(BIN)/python benchmarks/nmi.py $(CORPORA)/bbc-news

# Deployment tooling, each in its own environment: their pins conflict with each other and
# with the project's. Versions are pinned so that CI checks the template with known rules.
TOOLS := .venv-tools
SAM := $(TOOLS)/sam/bin/sam
CFN_LINT := $(TOOLS)/sam/bin/cfn-lint
CHECKOV := $(TOOLS)/checkov/bin/checkov
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat tools-requirements.txt | cksum | cut -d' ' -f1)
# No telemetry and no region lookups from the CLIs.
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/python -m pip install --quiet $$(grep -E '^(aws-sam-cli|cfn-lint)==' tools-requirements.txt)
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/python -m pip install --quiet $$(grep -E '^checkov==' tools-requirements.txt)
	rm -f $(TOOLS)/.installed-*
	touch $@

# The template's checks: SAM's own validation with its linter, cfn-lint, and checkov (every
# finding is fixed or skipped inline in template.yaml with the reason).
template-check: tools
	$(SAM) validate --lint
	$(CFN_LINT) template.yaml
	$(CHECKOV) --framework cloudformation --file template.yaml --skip-download --compact --quiet

# Builds every function and layer for the Lambda runtime (no container needed: the layers'
# Makefiles fetch python3.12 manylinux wheels) and prints each function's unzipped size.
build: tools install model-layer
	$(SAM) build
	$(BIN)/python benchmarks/lambda_sizes.py .aws-sam/build

# The report test opens report.html in headless Debian Chromium; install it when missing (as root).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# Our grouping vs KMeans with the true k vs BERTopic defaults, on BBC News (also cut to unequal
# class sizes), a man-page corpus and a SciPy docstring corpus built from this machine, on the
# same cached vectors; BERTopic is installed only here, with
# torch==2.13.0 (the CPU build) so nothing pulls CUDA.
bench-quality: install
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[local,dev,bench]"
	$(BIN)/python benchmarks/quality.py $(CORPORA)/bbc-news

clean:
	rm -rf $(VENV) $(TOOLS) .autotag out .aws-sam

.PHONY: extraction-size eval-long-documents

# Installed size of the document-format libraries for the Lambda runtime (python3.12 x86_64);
# WHOLE_LAYER=1 also measures every requirement of the SharedLayer (downloads about 100 MB).
extraction-size: install
	$(BIN)/python benchmarks/extraction_layer_size.py $(if $(WHOLE_LAYER),--whole-layer)

# First-chunk vs all-chunks document vectors on the BBC corpus (chunk vectors cached in out/).
eval-long-documents: install
	$(BIN)/python benchmarks/long_documents.py $(CORPORA)/bbc-news

.PHONY: chaos

# The fault-injection and burst run: faults from the embedding API, database connections killed,
# Lambda timeouts, duplicate deliveries, then one reprocessing pass and the checks (README: "Faults
# and bursts"). CHAOS_UPLOADS=200 for a quick one; CI runs that size in tests/test_chaos.py.
CHAOS_UPLOADS ?= 2000
chaos: install
	$(BIN)/python -m benchmarks.chaos --uploads $(CHAOS_UPLOADS)
