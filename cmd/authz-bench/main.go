// Command authz-bench measures the authorization server's hot paths
// (introspection, client_credentials, the signed-in authorize, code
// exchange, refresh, revocation and the whole signed-in flow) at a few
// concurrencies, next to pgbench -S on the same PostgreSQL, and prints one
// table. "make bench" runs it; docs/benchmark.md explains the columns.
//
//	authz-bench [--quick] [--duration 7s] [--concurrency 8,32] [--ops a,b] [--json] [--cpuprofile file]
//
// It starts a private PostgreSQL from the local binaries, or uses the
// server AUTHZ_DATABASE_URL names (making and dropping its own databases
// there), and runs the server in its own process on 127.0.0.1; the load
// generator is a child process of the same binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/authz/authz/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
