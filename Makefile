# dbproxy: `make build`, `make test`, `make bench`. npm scripts put Node 24 (the `node`
# devDependency) first on the PATH; everything here goes through them.
.PHONY: all deps pydeps build test test-unit bench clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

## psycopg 3 for the driver tests, in a venv cached outside the repo.
pydeps:
	bash hack/install-python-deps.sh

build: deps
	npm run build

## Unit and integration tests (real PostgreSQL 15 started on loopback by hack/postgres.ts).
test: build pydeps
	npm test

## Unit tests only: no PostgreSQL needed.
test-unit: deps
	npm test -- proxy/

## pgbench through PostgreSQL directly, dbproxy and PgBouncer; prints the comparison tables.
bench: build
	bash hack/install-bench-deps.sh
	npm run bench

clean:
	rm -rf dist
