# dbproxy: `make build`, `make test`, `make bench`. npm scripts put Node 24 (the `node`
# devDependency) first on the PATH; everything here goes through them.
.PHONY: all deps pydeps build test test-unit bench bench-quick bench-readers demo e2e-kind kind-deps fuzz conformance conformance-asyncpg clean

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

## Every test: unit, integration (real PostgreSQL 15 started on loopback by hack/postgres.ts),
## operator (real control plane) and end to end on kind (test/kind; `make kind-deps`).
test: build pydeps kind-deps
	npm test

## Unit tests only (next to the sources in proxy/ and operator/, and the import-graph check in
## test/layering.test.ts): no PostgreSQL, no control plane.
test-unit: deps
	DBPROXY_TEST_CONTROLPLANE_START=never npm test -- --testPathPatterns '^(proxy/|operator/|test/layering)'

## The product on this machine: PostgreSQL primary + standby, a control plane, the local pod
## runner, the operator from the Helm chart and a sample DatabaseProxy; prints a working psql
## connection string. Ctrl-C cleans up. Needs root (mount namespaces for the pods).
demo: build
	bash hack/install-postgres.sh
	bash hack/helm/install.sh --quiet >/dev/null
	npx --no-install node dist/hack/demo/demo.js

## End to end on a throwaway kind cluster: the image built from the Dockerfile, the chart,
## PostgreSQL 15, a DatabaseProxy, psql through its Service (hack/kind/e2e.sh). With Docker: stock
## kind. Without (this project's build machine, as root): podman and a node image built locally,
## with no registry, by hack/kind/install.sh (cached in ~/.cache/dbproxy/kind; `make kind-deps`).
e2e-kind:
	bash hack/kind/e2e.sh

## What kind needs here, built and cached by version (instant when current).
kind-deps:
	bash hack/kind/install.sh

## Random and mutated protocol traffic against a running proxy, bounded by time (not part of
## `make test`): FUZZ_SECONDS=600 make fuzz for a longer run, FUZZ_SEED=n to repeat one.
fuzz: build
	bash hack/install-postgres.sh
	npx --no-install node dist/test/fuzz/fuzz.js

## pgbench through PostgreSQL directly, dbproxy and PgBouncer, and through the read-only endpoint
## over one and two standbys; prints the comparison tables.
bench: build
	bash hack/install-bench-deps.sh
	npm run bench

## The hot-path table only (dbproxy vs PgBouncer 1.24: TPS, latency, CPU per transaction), smaller:
## about a minute, for iterating.
bench-quick: build
	bash hack/install-bench-deps.sh
	BENCH_QUICK=1 npx --no-install node dist/test/bench/cpuBench.js

## The read-only endpoint alone (also part of `make bench`): pgbench -S through it over one standby
## and over two, and through the writer for reference, with each cluster's share of the
## transactions; writes .tmp/readers-bench.md. BENCH_QUICK=1 make bench-readers: about three minutes.
bench-readers: build
	bash hack/install-bench-deps.sh
	npx --no-install node dist/test/bench/readersBench.js

## pgx's own test suite (github.com/jackc/pgx/v5 from the Go module proxy, cached in
## ~/.cache/dbproxy/pgx) against PostgreSQL 15 directly and through dbproxy (pool of 20); prints
## passed/failed/skipped for both and the tests that fail only through dbproxy. Not part of
## `make test`. Bounded by CONFORMANCE_TIMEOUT (default 60m); exits 1 on a proxy-only failure
## not listed in hack/conformance/known-differences.txt.
conformance: build
	bash hack/conformance/run.sh

## asyncpg's test suite (Python asyncio driver, from PyPI, pinned) against PostgreSQL 15 directly
## and through dbproxy; exits 1 on a proxy-only failure not in
## hack/conformance/asyncpg-known-differences.txt.
conformance-asyncpg: build
	bash hack/conformance/asyncpg.sh

clean:
	rm -rf dist
