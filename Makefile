# Tollgate — two commands: `make run` and `make test`.
#
# Both run on a real PostgreSQL and a real Valkey: the embedded ones (pip wheels, data in the
# git-ignored .local/, started and stopped around the command by `python -m devservers`) unless
# DATABASE_URL / REDIS_URL name servers of your own. See docs/development.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed
DEVSERVERS := $(BIN)/python -m devservers --
PORT ?= 8000
# The code uvicorn watches: every top-level package, and the templates.
RELOAD_DIRS := $(patsubst %/__init__.py,%,$(wildcard */__init__.py)) templates

.PHONY: run serve test lint format bench bench-peer fuzz migrate messages venv clean

# `make run` installs the runtime only; the test, lint and benchmark tools come with `make test`.
$(RUNTIME_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

venv: $(DEV_STAMP)

## Serve the portal on http://127.0.0.1:$(PORT): embedded PostgreSQL and Valkey, uvicorn (ASGI, one
## worker, reloads on code and template changes), Celery tasks inline, sandbox provider,
## simulated checkout. SITE_URL follows PORT unless set.
run: $(RUNTIME_STAMP)
	PORT=$(PORT) CELERY_TASK_ALWAYS_EAGER=$${CELERY_TASK_ALWAYS_EAGER:-true} EMAIL_VERIFICATION=$${EMAIL_VERIFICATION:-optional} \
	  $(DEVSERVERS) $(MAKE) --no-print-directory serve PORT=$(PORT)

# What `make run` runs inside the servers (needs DATABASE_URL and REDIS_URL).
serve:
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_catalog
	$(BIN)/python manage.py seed_proxy_catalog
	$(BIN)/python manage.py ensure_local_admin
	$(BIN)/uvicorn config.asgi:application --host 127.0.0.1 --port $(PORT) \
	  --reload $(addprefix --reload-dir ,$(RELOAD_DIRS)) --reload-include '*.html'

## Run the whole test suite on the embedded PostgreSQL and Valkey (or DATABASE_URL / REDIS_URL).
## Extra pytest arguments: make test ARGS="proxy/tests -x"
test: $(DEV_STAMP)
	$(DEVSERVERS) $(BIN)/pytest $(ARGS)

migrate: $(RUNTIME_STAMP)
	$(DEVSERVERS) $(BIN)/python manage.py migrate --noinput

## Refresh the French catalogue (locale/fr) from the templates and code, then compile it: fill
## the new empty msgstr entries in locale/fr/LC_MESSAGES/django.po between the two steps
## (docs/development.md, Translations). Needs Debian's gettext.
messages: $(DEV_STAMP)
	$(DEVSERVERS) $(BIN)/python manage.py makemessages -l fr --add-location file --no-obsolete \
	  -i .venv -i .local -i staticfiles -i static -i bench -i test-artifacts -i node_modules -i tests
	$(DEVSERVERS) $(BIN)/python manage.py compilemessages -l fr -i .venv

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The benchmark (docs/bench.md), on the embedded PostgreSQL and Valkey unless DATABASE_URL /
## REDIS_URL (or BENCH_DATABASE_URL / BENCH_REDIS_URL) name servers of your own.
bench: $(DEV_STAMP)
	$(DEVSERVERS) $(BIN)/python -m bench

## The same phases through LiteLLM's proxy too (installed once into bench/.work/), alternated with
## Tollgate in the same run; the ratios go under `peer` in bench/results.json.
bench-peer: $(DEV_STAMP)
	$(DEVSERVERS) $(BIN)/python -m bench --peer litellm

fuzz: $(DEV_STAMP)
	TOLLGATE_FUZZ_EXAMPLES=500 $(DEVSERVERS) $(BIN)/pytest -m fuzz -p no:cacheprovider

# Keeps .local/ (the embedded servers' data); `rm -rf .local` starts them from scratch.
clean:
	rm -rf $(VENV) .pytest_cache staticfiles
