.PHONY: test test-race vet build run demo

test:
	go test ./...

test-race:
	go test -race ./...

vet:
	go vet ./...

build:
	go build -o bin/authz ./cmd/authz

# A development server with demo data, on a private PostgreSQL kept in
# ./.data (installed first when missing and run as root); see "authz dev -h".
# Built, not "go run": go run exits 1 on Ctrl-C, which make reports as an
# error.
run: build
	bin/authz dev

# The same, plus the demo apps in the same process: open
# http://localhost:3000 and click "Get contacts". Other ports, e.g.:
#   AUTHZ_LISTEN=:8090 make demo DEMO_FLAGS="--demo-bff-listen 127.0.0.1:3001 --demo-api-listen 127.0.0.1:4001"
demo: build
	bin/authz dev --demo $(DEMO_FLAGS)
