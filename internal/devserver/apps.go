package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/bff"
)

// demoApps are the demo apps that dev --demo runs, on listeners of their
// own.
type demoApps struct {
	bffLn, apiLn net.Listener
	bff          bff.Config
	api          api.Config
	logger       *slog.Logger
}

// run discovers the provider (which must be serving), then serves the API
// and the BFF until ctx ends or one of them fails; ready is called once
// both serve. Cancelled while discovering, it returns nil.
func (d *demoApps) run(ctx context.Context, ready func()) error {
	defer d.bffLn.Close() // Serve closes them; this is for early returns
	defer d.apiLn.Close()
	apiLog, bffLog := d.logger.With("app", demoAPI), d.logger.With("app", demoBFF)
	apiHandler, err := api.NewHandler(ctx, d.api, apiLog)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo API: %w", err)
	}
	bffHandler, err := bff.NewServer(ctx, d.bff, bffLog)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo BFF: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 2)
	go func() { served <- wrapErr("demo API", demo.Serve(ctx, d.apiLn, apiHandler, apiLog)) }()
	go func() { served <- wrapErr("demo BFF", demo.Serve(ctx, d.bffLn, bffHandler, bffLog)) }()
	d.logger.Info("demo apps listening", "bff", d.bffLn.Addr().String(), "api", d.apiLn.Addr().String())
	ready()
	err = <-served // nil once ctx ended; else one failed: stop the other
	cancel()
	return errors.Join(err, <-served)
}

func wrapErr(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// runWithDemo serves the provider on ln (serve) and, once it listens, the
// demo apps, until ctx ends; ready is called when all three serve. The
// demo apps stop first (a sign-in in flight still needs the provider),
// then the provider. If any of them fails, all stop.
func runWithDemo(ctx context.Context, serve func(context.Context, net.Listener) error, ln net.Listener, apps *demoApps, ready func()) error {
	providerCtx, stopProvider := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProvider()
	provider := make(chan error, 1)
	go func() { provider <- serve(providerCtx, ln) }()

	appsCtx, stopApps := context.WithCancel(ctx)
	defer stopApps()
	demos := make(chan error, 1)
	go func() { demos <- apps.run(appsCtx, ready) }()

	select {
	case err := <-provider: // failed: nothing stopped it
		stopApps()
		return errors.Join(err, <-demos)
	case err := <-demos: // ctx ended, or an app failed
		stopProvider()
		return errors.Join(err, <-provider)
	}
}
