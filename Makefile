# One entry point for people and CI. `make run` serves the app; `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup run test test-backend test-frontend lint ferretdb

help:
	@echo "make up / ps / logs [S=service] - docker compose: start or update the stack, status, follow logs"
	@echo "make run     - start the backend (local FerretDB under ./var when MONGO_URL is unset)"
	@echo "make test    - install what is missing, then run the whole test suite"
	@echo "make lint    - ruff, mypy and the import contracts (lint-imports)"
	@echo "make test-frontend - API types up to date, typecheck, Vitest, build, e2e in Chromium (frontend/)"
	@echo "make snapshot / verify              - deploy check before / after a deploy (DEPLOY_RULES.md)"
	@echo "make backup / backup-verify         - archive + checksum + manifest; restore newest into scratch DB"
	@echo "make restore ARCHIVE=... INTO=name  - restore an archive into a named database (insert-only)"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)

ferretdb: $(STAMP)
	$(BIN)/python -c "from backend.devtools.ferretdb import ensure_built; ensure_built()"

run: setup ferretdb
	$(BIN)/python -m backend

test-backend: setup ferretdb
	cd tools/ferretdb && go test ./...
	$(BIN)/python -m pytest

FRONTEND := frontend

$(FRONTEND)/node_modules/.installed: $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	@touch $@

# The generated API types must match the backend; then typecheck, Vitest, build and the e2e run
# (real backend on FerretDB + fake Evolution, built SPA, Debian's Chromium via playwright-core).
test-frontend: setup ferretdb $(FRONTEND)/node_modules/.installed
	cd $(FRONTEND) && npm run check:api && npm run typecheck && npm test && npm run e2e

test: test-backend test-frontend

lint: setup compose-lint
	$(BIN)/ruff check backend tests scripts bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# --- the production stack (docker-compose.yml), as the operators' runbook names the commands.
# There is deliberately no target that stops the stack with its volumes or removes a volume.
COMPOSE ?= docker compose
S ?=

.PHONY: up ps logs

up:
	$(COMPOSE) up -d --build

ps:
	$(COMPOSE) ps

# `make logs S=backend` follows one service.
logs:
	$(COMPOSE) logs -f --tail=200 $(S)

# --- deploy safety and backups (DEPLOY_RULES.md). None of these removes data or volumes. ---
SNAPSHOT ?= var/deploy/before.json
COMPOSE_LINT := tools/compose-lint
MONGO_TOOLS_VERSION ?= 100.10.0

.PHONY: snapshot verify backup backup-verify restore compose-lint mongo-init mongo-tools

snapshot: setup
	$(BIN)/python -m scripts.deploy_check snapshot --out $(SNAPSHOT)

verify: setup
	$(BIN)/python -m scripts.deploy_check verify --against $(SNAPSHOT)

backup: setup
	$(BIN)/python -m scripts.backup run

backup-verify: setup
	$(BIN)/python -m scripts.backup verify

restore: setup
	@test -n "$(ARCHIVE)" -a -n "$(INTO)" || { echo "usage: make restore ARCHIVE=backups/x.archive.gz INTO=dbname"; exit 2; }
	$(BIN)/python -m scripts.restore "$(ARCHIVE)" --into "$(INTO)"

mongo-init: setup
	$(BIN)/python -m scripts.gen_mongo_init

$(COMPOSE_LINT)/node_modules/.installed: $(COMPOSE_LINT)/package.json $(COMPOSE_LINT)/package-lock.json
	cd $(COMPOSE_LINT) && npm ci --no-audit --no-fund --silent
	@touch $@

# A real Compose validator (Compose Specification schema + lint rules) and the generated
# mongo-init index script checked against the backend's declared indexes.
compose-lint: setup $(COMPOSE_LINT)/node_modules/.installed
	cd $(COMPOSE_LINT) && npx --no-install dclint ../../docker-compose.yml
	$(BIN)/python -m scripts.gen_mongo_init --check

# MongoDB Database Tools from the Go module proxy into var/bin (used by scripts.backup when present).
# The proxy currently refuses github.com/mongodb/mongo-tools (403), so this reports and moves on:
# backups then use the built-in writer of the same archive format (scripts/archive.py).
mongo-tools:
	@mkdir -p var/bin
	@for t in mongodump mongorestore; do \
	  GOBIN=$(CURDIR)/var/bin go install github.com/mongodb/mongo-tools/$$t@$(MONGO_TOOLS_VERSION) \
	  || echo "mongo-tools: $$t could not be built here; scripts.backup uses its built-in archive writer"; \
	done

# Benchmark (not a test): seeds 1k/10k/100k tickets into a fresh FerretDB, rewrites its section of
# docs/BENCHMARKS.md, raw JSON under bench/results/. 35 minutes measured on 2 heavily shared cores.
.PHONY: bench
bench: setup ferretdb
	$(BIN)/python -m bench.tickets_bench --sizes 1000,10000,100000 --out docs/BENCHMARKS.md
