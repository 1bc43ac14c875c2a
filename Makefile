# Two commands: `make book` (set up, execute the notebooks at smoke, build the site) and
# `make test` (set up, then every test CI runs). Everything else here serves those two.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SITE := _build/site/_build/html/index.html

.PHONY: book test setup unit notebooks check browser clean

book: setup
	$(BIN)/repro book

test: setup
	$(BIN)/python -m pytest -n 2 tests --ignore=tests/browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -p no:randomly --nbval-lax \
		--nbval-sanitize-with tests/nbval-sanitize.cfg notebooks
	$(BIN)/repro check
	$(BIN)/repro book
	$(BIN)/python -m pytest tests/browser

setup: $(VENV)/.installed node_modules/.installed browser-installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[book,test]'
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
	rm -rf _build runs
