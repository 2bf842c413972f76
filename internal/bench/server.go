package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// server is the authorization server, in this process, on a loopback
// listener.
type server struct {
	Issuer string
	store  *storage.Store
	srv    *http.Server
	errs   *errorTap
	phase  atomic.Value // the CPU profile label of its requests
	done   chan error
	// stopCache ends the client cache's listening connection.
	stopCache func()
}

// startServer builds the handler exactly as authz serve does, with a
// logger that formats each line as production does (JSON) but writes it
// nowhere, and serves it on 127.0.0.1. With label, every request's CPU
// samples carry op=<the current phase>.
func startServer(store *storage.Store, label bool) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	cfg, err := authz.ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		ln.Close()
		return nil, err
	}
	secret := make([]byte, 48)
	_, _ = rand.Read(secret)
	cfg.Issuer = "http://" + ln.Addr().String()
	cfg.Listen = ln.Addr().String()
	cfg.AdminListen = "off"
	cfg.Secrets = [][]byte{[]byte(base64.RawURLEncoding.EncodeToString(secret))}
	s := &server{Issuer: cfg.Issuer, store: store, errs: newErrorTap(), done: make(chan error, 1)}
	s.phase.Store("setup")
	h, err := authz.New(cfg, store, slog.New(s.errs))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("build the server: %w", err)
	}
	var handler http.Handler = h
	if label {
		handler = labelled(h, &s.phase)
	}
	// The timeouts of authz serve (cmd/authz/serve.go).
	s.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.errs, slog.LevelWarn),
	}
	// As authz serve does: clients from memory, kept fresh by LISTEN.
	s.stopCache = store.StartClientCache(nil, slog.New(s.errs))
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close shuts the server down gracefully.
func (s *server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.stopCache()
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// labelled marks each request's CPU samples with the phase it ran in, so
// one profile of the whole benchmark can be split by operation.
func labelled(next http.Handler, phase *atomic.Value) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, _ := phase.Load().(string)
		pprof.Do(r.Context(), pprof.Labels("op", op), func(ctx context.Context) {
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	})
}

// errorTap is the server's logger: every record is formatted as JSON, as
// in production, into io.Discard (the cost of logging without the cost
// of a terminal); records at Error level, which the server writes for
// each 5xx, are counted and the first few kept.
type errorTap struct {
	discard, capture slog.Handler
	st               *tapState
}

type tapState struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	count int
}

// maxKeptErrors is how many error lines a run keeps to show.
const maxKeptErrors = 3

func newErrorTap() *errorTap {
	st := &tapState{}
	return &errorTap{
		discard: slog.NewJSONHandler(io.Discard, nil),
		capture: slog.NewJSONHandler(st, nil),
		st:      st,
	}
}

// Write receives the formatted error lines kept.
func (st *tapState) Write(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.buf.Write(p)
}

func (t *errorTap) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (t *errorTap) Handle(ctx context.Context, r slog.Record) error {
	err := t.discard.Handle(ctx, r)
	if r.Level < slog.LevelError {
		return err
	}
	t.st.mu.Lock()
	t.st.count++
	keep := t.st.count <= maxKeptErrors
	t.st.mu.Unlock()
	if keep {
		return t.capture.Handle(ctx, r)
	}
	return err
}

func (t *errorTap) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorTap{discard: t.discard.WithAttrs(as), capture: t.capture.WithAttrs(as), st: t.st}
}

func (t *errorTap) WithGroup(name string) slog.Handler {
	return &errorTap{discard: t.discard.WithGroup(name), capture: t.capture.WithGroup(name), st: t.st}
}

// take returns how many errors were logged since the last call, and the
// first few of them.
func (t *errorTap) take() (int, []string) {
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	n := t.st.count
	lines := strings.Split(strings.TrimSpace(t.st.buf.String()), "\n")
	if t.st.buf.Len() == 0 {
		lines = nil
	}
	t.st.count = 0
	t.st.buf.Reset()
	return n, lines
}
