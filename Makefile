# Tollgate — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench fuzz migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

## Serve the portal locally on embedded defaults (SQLite, local cache, eager Celery, sandbox).
run: migrate
	$(BIN)/python manage.py seed_catalog
	$(BIN)/python manage.py seed_proxy_catalog
	$(BIN)/python manage.py ensure_local_admin
	$(BIN)/python manage.py runserver 127.0.0.1:8000

## Run the whole test suite (SQLite by default; PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set).
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

fuzz: $(STAMP)
	TOLLGATE_FUZZ_EXAMPLES=500 $(BIN)/pytest -m fuzz -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache staticfiles
