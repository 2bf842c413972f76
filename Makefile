.PHONY: test test-race test-isolation test-pooler vet build run demo bench

# Both first install what the tests need when it is missing (PostgreSQL,
# PgBouncer, Chromium, Node.js and the browser test's npm packages: as
# root with apt-get, otherwise they say what to install); see
# scripts/test-deps.
test:
	bash scripts/test-deps
	go test ./...

test-race:
	bash scripts/test-deps
	go test -race -count=1 ./...

# The storage must give the same answers at every isolation level
# (CockroachDB runs SERIALIZABLE): the storage suites and the end-to-end
# races (one code redeemed at once by many, one refresh token, wrong
# passwords against a limit, key rotations, migrations) under REPEATABLE
# READ and SERIALIZABLE. AUTHZ_TEST_ISOLATION works with any go test run.
ISOLATION_TESTS = Concurren|Race|Throttle|Rotat|Refresh|Reuse|Migrat|Statements
test-isolation:
	bash scripts/test-deps
	for level in "repeatable read" serializable; do \
		echo "isolation: $$level"; \
		AUTHZ_TEST_ISOLATION="$$level" go test -count=1 ./storage/ || exit 1; \
		AUTHZ_TEST_ISOLATION="$$level" go test -count=1 -run '$(ISOLATION_TESTS)' ./authz/ ./cmd/authz/ || exit 1; \
	done

# The storage and end-to-end suites once more, each test's database behind
# a PgBouncer in transaction pooling mode (pgx's exec mode), as authz
# serve runs with AUTHZ_DATABASE_POOLER=transaction.
test-pooler:
	bash scripts/test-deps
	AUTHZ_TEST_POOLER=pgbouncer go test -count=1 ./storage/... ./authz/

vet:
	go vet ./...

# The version "authz version" prints: the nearest tag and the commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

build:
	go build -ldflags "-X main.buildVersion=$(VERSION)" -o bin/authz ./cmd/authz

# A development server with demo data, on a private PostgreSQL kept in
# ./.data (installed first when missing and run as root); see "authz dev -h".
# Built, not "go run": go run exits 1 on Ctrl-C, which make reports as an
# error.
run: build
	bin/authz dev

# The same, plus the demo apps in the same process: open
# http://localhost:3000 and click "Get contacts". Other ports, e.g.:
#   AUTHZ_LISTEN=:8090 make demo DEMO_FLAGS="--demo-bff-listen 127.0.0.1:3001 --demo-api-listen 127.0.0.1:4001"
# DEMO_TOKENS=jwt: JWT access tokens, which the contacts API verifies itself.
demo: build
	bin/authz dev --demo $(if $(filter jwt,$(DEMO_TOKENS)),--demo-jwt-access-tokens) $(DEMO_FLAGS)

# Throughput, latency, SQL statements and CPU per request of the hot paths,
# next to pgbench -S on the same private PostgreSQL: about 3 minutes, one
# table (docs/benchmark.md). Other runs, e.g.:
#   make bench BENCH_FLAGS=--quick        (about 30 s)
#   make bench BENCH_FLAGS="--repeat 3"   (about 7 minutes: medians of three rounds)
#   make bench BENCH_FLAGS="--json --ops introspect-active,refresh-long"
bench:
	go build -o bin/authz-bench ./cmd/authz-bench
	bin/authz-bench $(BENCH_FLAGS)
