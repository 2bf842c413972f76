.PHONY: test test-race vet build run

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
