# One entry point for people and CI. Every target does its own setup, idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: setup demo serve test lint typecheck pytest bench bench-small mutate screenshots lock clean

setup: $(VENV)/.installed static/vendor/.built

$(VENV)/.installed: requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

static/vendor/.built: package.json package-lock.json scripts/copy-vendor.mjs
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build

demo: setup
	$(BIN)/callboard demo

serve: setup
	$(BIN)/callboard serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

# Benchmarks at a small size, so CI proves they run; `make bench` runs them at full size.
bench-small: setup
	$(PY) -m bench --small

bench: setup
	$(PY) -m bench

test: lint typecheck pytest bench-small

# Mutation testing of the modules whose mistakes cost most (docs/testing.md §2): ~35 minutes on one core,
# so not part of `make test`. `make mutate MODULES="hosts urls"` runs some; `--list` in the script names them.
mutate: setup
	$(PY) scripts/mutate.py $(MODULES)

# The README's two screenshots (docs/screenshots/), taken by the browser test of every screen
# (tests/browser/test_screens.py) at a desktop and a phone width. An existing setup is used as it is
# (nothing is reinstalled); without one, `make setup` runs first.
SHOTS := build/screenshots
screenshots:
	test -f $(VENV)/.installed -a -f static/vendor/.built -a -f node_modules/axe-core/axe.min.js || $(MAKE) setup
	rm -rf $(SHOTS)
	CALLBOARD_SCREENSHOTS=$(SHOTS) $(BIN)/pytest -q -p no:randomly tests/browser/test_screens.py \
		-k "test_every_page and (desktop-light or phone-dark)"
	mkdir -p docs/screenshots
	cp $(SHOTS)/overview-desktop-light.png docs/screenshots/overview-desktop.png
	cp $(SHOTS)/overview-phone-dark.png docs/screenshots/phone-dark.png

lock:
	$(PYTHON) -m pip install --quiet pip-tools
	$(PYTHON) -m piptools compile --quiet --extra dev --generate-hashes --no-emit-index-url \
		--no-emit-find-links --strip-extras -o requirements/dev.txt pyproject.toml

clean:
	rm -rf $(VENV) node_modules static/vendor .mypy_cache .ruff_cache .pytest_cache
