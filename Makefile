# The two commands of the README: `make run` (demo on http://127.0.0.1:5000) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The demo (only for `make run`, never for the tests): SQLite in ./instance, the Robokassa sandbox
# standing in for the gateway.
run: export BILLCORE_BASE_URL ?= http://$(HOST):$(PORT)
run: export BILLCORE_PMROBOKASSA_SANDBOX ?= true

.PHONY: run test install install-test chromium axe clean translations screenshots

# The packages are installed by uv (from PyPI, into the venv, the versions setup.py allows): about 3 s
# where pip took 20. pip stays in the venv, upgraded, for the tests that build and install wheels.
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5,<1'

$(VENV)/.installed: setup.py | $(BIN)/uv
	$(UV) --upgrade pip -e .
	touch $@

$(VENV)/.installed-test: setup.py | $(BIN)/uv
	$(UV) --upgrade pip -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test axe

# axe-core, the accessibility audit the browser tests inject into every page, from the npm registry
# (pinned in tests/browser/package.json).
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json
	cd tests/browser && npm install --no-audit --no-fund --no-package-lock --silent
	touch $@

axe: $(AXE)

run: install
	$(BIN)/billcore init
	$(BIN)/billcore demo
	$(BIN)/billcore run --host $(HOST) --port $(PORT)

# Browser tests drive Debian's chromium through Playwright (Playwright cannot download browsers here).
# Without the recommended packages (fonts, extensions, desktop integration) the install takes a minute,
# not several; headless chromium needs none of them.
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# Tests run in parallel processes (pytest-xdist), one more than the machine has CPUs: with one per CPU
# the CPUs stood idle 8-10 % of the run while tests waited for chromium, subprocesses or PostgreSQL (see
# docs/performance.md). TEST_WORKERS=auto is one per CPU, TEST_WORKERS=0 runs them in this process.
# --dist loadgroup keeps tests of one xdist_group (the wheel builds) together.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
# PYTEST_STATUS=FILE keeps pytest's own exit code there (make itself exits 2 on any failure).
# PYTHONDONTWRITEBYTECODE is emptied for the tests: with it set (some machines export it), every test
# process and every server or command a test starts compiles billcore again, and pytest rewrites the
# assertions of ~280 modules of its plugins (hypothesis, schemathesis) again, about 15 % of the run.
test: install-test chromium
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); \
		status=$$?; [ -z "$(PYTEST_STATUS)" ] || echo $$status > "$(PYTEST_STATUS)"; exit $$status

# The README's two screenshots (docs/screenshots/), taken again from the running pages by a browser test.
screenshots: install-test chromium
	BILLCORE_README_SCREENSHOTS=1 BILLCORE_TEST_SCREENSHOTS=1 $(BIN)/python -m pytest -n 0 -q tests/browser/test_readme_screenshots.py

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts tests/browser/node_modules

# Re-extract the translatable strings and merge them into the catalogues (then translate ru's new ones).
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k ngettext:1,2 --no-location --sort-output -o billcore/translations/messages.pot . 
	$(BIN)/pybabel update -i billcore/translations/messages.pot -d billcore/translations --no-fuzzy-matching --ignore-obsolete --no-wrap
