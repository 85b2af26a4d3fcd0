# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both set up their own virtual environment with every dependency first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint typecheck check eval-bbc clean bench-quality chromium

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

test: install chromium
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

# The report test opens report.html in headless Debian Chromium; install it when missing (as root).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# Our grouping vs KMeans with the true k vs BERTopic defaults, on BBC News and a man-page corpus
# built from this machine, on the same cached vectors; BERTopic is installed only here, with
# torch pinned so nothing pulls CUDA.
bench-quality: install
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[local,dev,bench]"
	$(BIN)/python benchmarks/quality.py ../shared/corpora/bbc-news

clean:
	rm -rf $(VENV) .autotag out
