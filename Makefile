# Back-office CRM. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run test lint format bench migrations-check messages clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pinned requirements

run: $(STAMP) ## Migrate, load demo data if empty, serve on 127.0.0.1:8000 with a Celery worker and beat
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo
	DEBUG=$${DEBUG:-1} BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) scripts/run.sh

test: $(STAMP) ## Start private PostgreSQL and Redis on loopback and run the test suite
	scripts/with-services.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrations-check: $(STAMP) ## Fail when models and migrations differ
	$(BIN)/python manage.py makemigrations --check --dry-run

messages: $(STAMP) ## Extract and compile translations (needs GNU gettext)
	$(BIN)/python manage.py makemessages -l ko --ignore=.venv --ignore=var --ignore=static
	$(BIN)/python manage.py compilemessages -l ko --ignore=.venv

# The benchmark cluster gets a production-like shared_buffers: a quarter of this machine's 24 GiB.
bench: $(STAMP) ## Benchmarks at reference scale on a private PostgreSQL; writes bench/RESULTS.md
	KEEP_PGDATA=$${KEEP_PGDATA:-$(CURDIR)/bench/data/pgdata} PG_SHARED_BUFFERS=$${PG_SHARED_BUFFERS:-6GB} \
		scripts/with-services.sh $(BIN)/python bench/run.py $(BENCH_ARGS)

clean: ## Remove the virtualenv and local data under var/
	rm -rf $(VENV) var/*.sqlite3* var/celery-* var/mail
