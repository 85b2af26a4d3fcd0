# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both set up their own virtual environment with every dependency first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint typecheck check eval-bbc clean

install: $(STAMP)

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

# NMI of the categories against the labelled BBC News corpus (research use, read in place).
eval-bbc: install
	$(BIN)/python benchmarks/nmi.py ../shared/corpora/bbc-news

clean:
	rm -rf $(VENV) .autotag out

.PHONY: extraction-size eval-long-documents

# Installed size of the document-format libraries for the Lambda runtime (python3.12 x86_64);
# WHOLE_LAYER=1 also measures every requirement of the SharedLayer (downloads about 100 MB).
extraction-size: install
	$(BIN)/python benchmarks/extraction_layer_size.py $(if $(WHOLE_LAYER),--whole-layer)

# First-chunk vs all-chunks document vectors on the BBC corpus (chunk vectors cached in out/).
eval-long-documents: install
	$(BIN)/python benchmarks/long_documents.py ../shared/corpora/bbc-news
