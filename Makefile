# Postroute: `make run` starts the whole product, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
WEB_PORT ?= 8000
export WEB_PORT

.PHONY: install run demo test test-fast lint bench clean messages screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Development secrets, made once per checkout and never committed.
.env: | $(BIN)/python
	$(BIN)/python scripts/make_dev_env.py > .env

run: install .env
	$(BIN)/python manage.py migrate --noinput
	@echo ""
	@echo "  Postroute runs at  http://127.0.0.1:$(WEB_PORT)/   (Ctrl-C stops everything)"
	@echo "  Letters the product sends land in the SMTP sink: this console and var/mailsink/*.eml"
	@echo "  A demo account: make demo (in another terminal)"
	@echo ""
	$(BIN)/honcho -f Procfile start

demo: install .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo

# The suite writes nothing in the checkout: its files go to a temporary
# folder (config/settings_test.py), and pytest keeps no cache here.
test: install
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The same suite without the tests marked slow (fault matrix, killed workers, load).
test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf var staticfiles .pytest_cache .ruff_cache

# Benchmarks run against PostgreSQL (BENCH_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/postroute_bench) and print their figures.
bench: install
	cd bench && for b in bench_*.py; do echo "== $$b"; ../$(BIN)/python $$b || exit 1; done

# Translations (README, "Languages"): re-extract every marked string into
# locale/ru and locale/vi (needs GNU gettext: apt install gettext), list what
# is untranslated or fuzzy, and compile the .mo files with polib. Exits 1
# while something is left to translate.
MESSAGES_IGNORE := --ignore=.venv --ignore=tests --ignore=bench --ignore=staticfiles --ignore=var
messages: install
	DEBUG=1 SECRET_KEY=messages $(BIN)/python manage.py makemessages -l ru -l vi --no-location --no-obsolete $(MESSAGES_IGNORE)
	DEBUG=1 SECRET_KEY=messages $(BIN)/python manage.py makemessages -d djangojs -l ru -l vi --no-location --no-obsolete $(MESSAGES_IGNORE)
	$(BIN)/python scripts/i18n.py compile
	$(BIN)/python scripts/i18n.py missing

# The README's Russian dashboard, taken by the Chromium test.
screenshots: install
	SCREENSHOTS=docs REQUIRE_SERVICES=1 $(BIN)/python -m pytest "tests/browser/test_languages_browser.py" -q
