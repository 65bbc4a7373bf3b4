# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export FLASK_APP := wsgi

.PHONY: run test install install-test system-packages migrate lint format bench clean \
	translations-extract translations-update translations-compile

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the dependency list changes.
$(VENV)/.installed: setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,postgres,redis]'
	touch $@

install: $(VENV)/.installed translations-compile

# Translations (gettext through Flask-Babel): the catalogues are
# reseller/translations/<lang>/LC_MESSAGES/messages.po; the compiled .mo files are built here
# by `make install` (they are not committed).
LANGS := ru zh es
CATALOGUES := $(foreach l,$(LANGS),reseller/translations/$(l)/LC_MESSAGES/messages)

translations-extract: $(VENV)/.installed
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k ngettext:1,2 \
		--no-location --sort-by-file --project reseller -o reseller/translations/messages.pot .

translations-update: translations-extract
	$(VENV)/bin/pybabel update -i reseller/translations/messages.pot -d reseller/translations \
		--no-fuzzy-matching

translations-compile: $(addsuffix .mo,$(CATALOGUES))

reseller/translations/%/LC_MESSAGES/messages.mo: reseller/translations/%/LC_MESSAGES/messages.po \
		| $(VENV)/.installed
	$(VENV)/bin/pybabel compile --statistics -l $* -i $< -o $@

system-packages:
	@scripts/system-packages.sh

migrate: install
	mkdir -p instance
	RESELLER_ENV=development $(VENV)/bin/flask db upgrade

# The web server, the worker and (with TELEGRAM_BOT_TOKEN) the bot, as one command
# (scripts/run.py): `make run PORT=5001`. A taken port is said before anything is installed.
PORT ?= 5000
ifneq ($(filter run,$(MAKECMDGOALS)),)
PORT_PROBLEM := $(shell $(PYTHON) scripts/run.py --check-port --port $(PORT) 2>&1)
ifneq ($(PORT_PROBLEM),)
$(error $(PORT_PROBLEM))
endif
endif
run: install
	@$(PY) scripts/run.py --port $(PORT)

test: install system-packages
	scripts/run-tests.sh $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

$(VENV)/.installed-bench: setup.cfg pyproject.toml | $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,postgres,redis,bench]'
	touch $@

# The performance benchmark (about 7 minutes): prints a table and writes bench/latest.md.
bench: install $(VENV)/.installed-bench
	@bench/system-packages.sh
	$(PY) bench/run.py $(BENCH_ARGS)
