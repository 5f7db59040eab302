# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test migrate seed lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(VENV)/.runtime $@

## run: migrate the database, seed the demo business if empty, start dashboard + API + scheduler
run: $(VENV)/.runtime migrate seed
	@echo ""
	@echo "  Dashboard  http://localhost:8501   (demo login printed above)"
	@echo "  API        http://localhost:8000/docs"
	@echo ""
	$(BIN)/honcho start

migrate: $(VENV)/.runtime
	$(BIN)/python -m core migrate

seed: $(VENV)/.runtime
	$(BIN)/python -m core seed-demo --if-empty

## test: the whole suite, on SQLite and (when reachable) PostgreSQL
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy core

## bench: the benchmarks (PostgreSQL at TEST_DATABASE_URL); each prints its numbers
bench: $(VENV)/.dev
	$(BIN)/python bench/select.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
