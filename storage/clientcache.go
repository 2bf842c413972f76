package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// clientCache keeps the clients fosite asks for (every token request,
// introspection and authorization) in memory, so they cost no round trip.
//
// What it guarantees: a change to a client (secret rotated, redirect URI
// removed, client deleted) takes effect on the server that made it as soon
// as its transaction ends, and on every other replica as soon as
// PostgreSQL's notification for it (migrations/010) arrives, normally
// within milliseconds of the commit. The cache is used only while the
// listening connection is up: from the moment it fails until it has
// listened again, and has emptied the cache, every lookup goes to the
// database. A listening connection that dies without an error is noticed
// by a heartbeat within listenHeartbeat + heartbeatTimeout; that is the
// longest a cached client can outlive a change made elsewhere.
//
// A token read for introspection takes its client from here too; a
// deleted client's tokens are deleted with it (ON DELETE CASCADE), so no
// token outlives its client.
type clientCache struct {
	mu      sync.Mutex
	entries map[string]*Client
	// gen counts invalidations: a lookup that began before one must not
	// store what it read, which may be older than the change.
	gen  uint64
	live atomic.Bool
	// listens counts the times the listening connection started
	// listening, for tests.
	listens atomic.Int64
	max     int
	// syncs are the markers SyncClientCache waits for.
	syncs map[string]chan struct{}
}

// Cache bounds and timing. A client entry is a few hundred bytes to a few
// kilobytes (its JWKS): 10,000 of them are at most tens of megabytes.
const (
	clientCacheSize  = 10000
	listenHeartbeat  = 10 * time.Second
	heartbeatTimeout = 5 * time.Second
	clientChannel    = "authz_clients"
)

func newClientCache() *clientCache {
	return &clientCache{entries: make(map[string]*Client), max: clientCacheSize, syncs: make(map[string]chan struct{})}
}

// get returns a copy of the cached client, and the generation to pass to
// put when it was not cached.
func (c *clientCache) get(id string) (*Client, uint64, bool) {
	if c == nil || !c.live.Load() {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.entries[id]; ok {
		cp := *cl
		return &cp, c.gen, true
	}
	return nil, c.gen, false
}

func (c *clientCache) put(cl *Client, gen uint64) {
	if c == nil || !c.live.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= c.max {
		for id := range c.entries { // drop an arbitrary one
			delete(c.entries, id)
			break
		}
	}
	cp := *cl
	c.entries[cl.ID] = &cp
}

// generation is the count of invalidations so far.
func (c *clientCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// forget drops one client, or every client for "*".
func (c *clientCache) forget(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if id == "*" {
		clear(c.entries)
		return
	}
	delete(c.entries, id)
}

// syncPrefix marks the notifications of SyncClientCache. No client id
// has it: ids are printable ASCII (authz's client validation).
const syncPrefix = "\x01sync:"

// synced reports whether payload is a SyncClientCache marker, and wakes
// its waiter.
func (c *clientCache) synced(payload string) bool {
	if !strings.HasPrefix(payload, syncPrefix) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.syncs[payload]; ok {
		close(ch)
		delete(c.syncs, payload)
	}
	return true
}

// wakeAll wakes every SyncClientCache waiter: the cache was emptied or
// turned off, which reflects every change there was.
func (c *clientCache) wakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for marker, ch := range c.syncs {
		close(ch)
		delete(c.syncs, marker)
	}
}

// SyncClientCache returns once this server's client cache has seen every
// change to clients committed before the call, on any replica: it sends a
// marker through the same channel and waits for it, and PostgreSQL
// delivers notifications in commit order. For tests and tools that change
// clients behind the store's back (plain SQL) and must not read the old
// ones. With the cache off it returns at once.
func (s *Store) SyncClientCache(ctx context.Context) error {
	if !s.clients.live.Load() {
		return nil
	}
	marker := syncPrefix + rand.Text()
	ch := make(chan struct{})
	s.clients.mu.Lock()
	s.clients.syncs[marker] = ch
	s.clients.mu.Unlock()
	defer func() {
		s.clients.mu.Lock()
		delete(s.clients.syncs, marker)
		s.clients.mu.Unlock()
	}()
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, clientChannel, marker); err != nil {
		return translate("sync the client cache", err)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cachedClient returns the client from the cache, or reads and caches it.
// A client read inside a transaction that has written to clients is not
// cached: it may not be committed.
func (s *Store) cachedClient(ctx context.Context, id string) (*Client, error) {
	cl, gen, ok := s.clients.get(id)
	if ok {
		return cl, nil
	}
	cl, err := s.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	sc := scopeOf(ctx)
	if sc != nil {
		// Under REPEATABLE READ or SERIALIZABLE the row comes from the
		// transaction's snapshot, which may predate a change the cache
		// has already heard of: only what nothing changed since BEGIN
		// may be kept.
		gen = sc.u.clientGen
	}
	if sc == nil || !sc.u.wroteClients {
		s.clients.put(cl, gen)
	}
	return cl, nil
}

// clientChanged drops a client the store is changing from the cache, now
// and again when the change is done (the returned func, outside a
// transaction; when the transaction ends, inside one), so no read in
// between can put back what is about to change.
func (s *Store) clientChanged(ctx context.Context, id string) (done func()) {
	s.clients.forget(id)
	if sc := scopeOf(ctx); sc != nil {
		sc.u.wroteClients = true
		sc.u.onEnd = append(sc.u.onEnd, func() { s.clients.forget(id) })
		return func() {}
	}
	return func() { s.clients.forget(id) }
}

// ListenerName is the application_name of the client cache's listening
// connection, as pg_stat_activity shows it.
const ListenerName = "authz client cache"

// ClientCacheOn reports whether clients are being served from memory:
// StartClientCache was called and its connection is listening.
func (s *Store) ClientCacheOn() bool { return s.clients.live.Load() }

// StartClientCache turns the client cache on: it listens for changes to
// clients on conn (nil: a connection like the pool's; a transaction
// pooler cannot carry LISTEN, so give a direct one there) until the
// returned stop function is called. Without it every client lookup reads
// the database.
func (s *Store) StartClientCache(conn *pgx.ConnConfig, logger *slog.Logger) (stop func()) {
	if conn == nil {
		conn = s.pool.Config().ConnConfig
	}
	conn = conn.Copy()
	conn.Tracer = nil // its waits are not statements of any request
	if conn.RuntimeParams == nil {
		conn.RuntimeParams = map[string]string{}
	}
	conn.RuntimeParams["application_name"] = ListenerName // for pg_stat_activity
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.listenForClients(ctx, conn, logger)
	}()
	return func() {
		cancel()
		<-done
	}
}

// listenForClients keeps one connection listening and drops what each
// notification names, reconnecting with backoff when it fails.
func (s *Store) listenForClients(ctx context.Context, cfg *pgx.ConnConfig, logger *slog.Logger) {
	const firstBackoff = 250 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		listens := s.clients.listens.Load()
		err := s.listenOnce(ctx, cfg, logger)
		if s.clients.listens.Load() != listens {
			backoff = firstBackoff // it did listen: a new failure
		}
		s.clients.live.Store(false)
		s.clients.forget("*")
		s.clients.wakeAll()
		if ctx.Err() != nil {
			return
		}
		logger.Warn("client cache off: listening for client changes failed; reading clients from the database until it is back", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, logger *slog.Logger) error {
	connectCtx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		// Bounded: a database that does not answer must not hold up stop.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), heartbeatTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+clientChannel); err != nil {
		return err
	}
	// Whatever changed while nobody listened is unknown: start empty.
	s.clients.forget("*")
	s.clients.live.Store(true)
	s.clients.listens.Add(1)
	s.clients.wakeAll()
	logger.Debug("client cache on")
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenHeartbeat)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if !s.clients.synced(n.Payload) {
				s.clients.forget(n.Payload)
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) || conn.PgConn().IsClosed() {
			return err
		}
		// Quiet for a while: make sure the connection still works.
		pingCtx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// GetClient implements fosite.ClientManager, from the client cache when
// it is on (StartClientCache).
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.cachedClient(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}
