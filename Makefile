# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-pooled migrate seed lint bench clean

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
	@# the ports honcho will really use: DASHBOARD_PORT and API_PORT from the environment or .env
	@$(BIN)/honcho run sh -c 'echo; \
		echo "  Dashboard  http://localhost:$${DASHBOARD_PORT:-8501}   (demo login printed above)"; \
		echo "  API        http://localhost:$${API_PORT:-8000}/docs"; echo'
	$(BIN)/honcho start

migrate: $(VENV)/.runtime
	$(BIN)/python -m core migrate

seed: $(VENV)/.runtime
	$(BIN)/python -m core seed-demo --if-empty

## test: the whole suite, on SQLite and (when reachable) PostgreSQL; then test-pooled
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-pooled

# the PostgreSQL tests of the engine, targeting, import, the API and events out, run again through a PgBouncer in
# transaction mode that the tests start themselves (Supabase's pooler on port 6543 behaves so): tests/pooler
POOLED_TESTS = tests/pooler tests/engine/test_dispatch.py tests/engine/test_crash.py \
	tests/engine/test_processes.py::test_four_schedulers_send_each_email_exactly_once \
	tests/engine/test_webhooks_out.py tests/test_targeting.py tests/test_import.py \
	tests/api/test_api_execute.py tests/api/test_api_recipients.py tests/api/test_api_webhook_endpoints.py \
	tests/channels/test_state_caps.py tests/engine/test_compliance_at_send.py

## test-pooled: those PostgreSQL tests again, through PgBouncer in transaction mode (needs pgbouncer installed)
test-pooled: $(VENV)/.dev
	TEST_POOLER=pgbouncer $(BIN)/python -m pytest $(POOLED_TESTS)

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
