package authz

import (
	"context"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authz/authz/storage"
)

// Metrics are the server's Prometheus metrics, in a registry of their own
// (one per Handler, so that many servers in one process do not collide).
//
// Everything per request is counted in one place, the access log
// (accessLog), which sees the answer as finally sent: handlers only note
// on the request (requestNote) what they did, and a result the database
// failure boundary replaced with a 503 is counted as the failure it was,
// never as the success the handler meant to report.
//
// Labels have bounded values: route templates (never raw paths), status
// classes, grant types, fixed outcomes. Every labelled series a request
// can touch is resolved once, at start-up, so counting costs no map
// lookups and no allocations.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	abandoned *prometheus.CounterVec

	mu     sync.Mutex
	routes map[string]*routeMetrics // by label; filled at start-up
	other  *routeMetrics            // requests no route matched

	outcomes    [numOutcomes]prometheus.Counter
	throttled   map[string]prometheus.Counter // by throttle; read-only once made
	unavailable prometheus.Counter
}

// routeMetrics are one route's series.
type routeMetrics struct {
	label     string
	byClass   [6]prometheus.Counter // index: status / 100; 0 is unused
	duration  prometheus.Observer
	abandoned prometheus.Counter
}

// outcome is what a request did that a metric counts beyond its status.
type outcome uint8

const (
	outcomeNone outcome = iota
	issuedAuthorizationCode
	issuedRefreshToken
	issuedClientCredentials
	issuedOther
	introspectionActive
	introspectionInactive
	introspectionError
	// introspectionRefused is a request not (yet) answered as an
	// introspection: the caller's authentication or its request was
	// refused. Not counted, unless the database failed it.
	introspectionRefused
	signInSuccess
	signInInvalidCredentials
	signInThrottled
	signInBusy
	signInError
	numOutcomes
)

// Throttles, as noted on a request refused by one (requestNote.throttledBy).
const (
	throttleAddress = "address" // sign-in failures from one address
	throttleAccount = "account" // sign-in failures as one username
	throttleShare   = "share"   // an address's share of password checks
	throttleClient  = "client"  // failed authentications of one client
)

// durationBuckets span a cached introspection (about a millisecond) to a
// request that ran into the database deadline (RequestTimeout, 5 s).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// newMetrics makes the registry with every metric: the pool's statistics
// and the signing key's age are read when scraped.
func newMetrics(pool *pgxpool.Pool, keys *keyManager, now func() time.Time) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_http_requests_total",
			Help: "HTTP requests answered, by route template and status class (those whose client went away are in authz_http_requests_abandoned_total instead).",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authz_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_http_requests_abandoned_total",
			Help: "HTTP requests whose client went away before the answer, by route template.",
		}, []string{"route"}),
		routes: make(map[string]*routeMetrics),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authz_database_unavailable_total",
			Help: "Requests answered 503 temporarily_unavailable because the database failed them.",
		}),
	}
	m.other = m.route("other")

	issued := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_tokens_issued_total",
		Help: "Successful token endpoint exchanges, by grant type.",
	}, []string{"grant_type"})
	introspections := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_introspections_total",
		Help: "Introspections by authenticated clients, by result: active, inactive, or error (the server could not tell).",
	}, []string{"result"})
	signIns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_sign_ins_total",
		Help: "Password sign-ins, by outcome.",
	}, []string{"outcome"})
	for o, c := range map[outcome]prometheus.Counter{
		issuedAuthorizationCode:  issued.WithLabelValues("authorization_code"),
		issuedRefreshToken:       issued.WithLabelValues("refresh_token"),
		issuedClientCredentials:  issued.WithLabelValues("client_credentials"),
		issuedOther:              issued.WithLabelValues("other"),
		introspectionActive:      introspections.WithLabelValues("active"),
		introspectionInactive:    introspections.WithLabelValues("inactive"),
		introspectionError:       introspections.WithLabelValues("error"),
		signInSuccess:            signIns.WithLabelValues("success"),
		signInInvalidCredentials: signIns.WithLabelValues("invalid_credentials"),
		signInThrottled:          signIns.WithLabelValues("throttled"),
		signInBusy:               signIns.WithLabelValues("busy"),
		signInError:              signIns.WithLabelValues("error"),
	} {
		m.outcomes[o] = c
	}

	throttled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authz_throttled_requests_total",
		Help: "Requests a throttle refused (sign-ins answered 429, client authentications answered 401 with Retry-After), by throttle.",
	}, []string{"throttle"})
	m.throttled = make(map[string]prometheus.Counter)
	for _, by := range []string{throttleAddress, throttleAccount, throttleShare, throttleClient} {
		m.throttled[by] = throttled.WithLabelValues(by)
	}

	m.reg.MustRegister(m.requests, m.durations, m.abandoned, m.unavailable, issued, introspections, signIns, throttled,
		newPoolCollector(pool), &keyAgeCollector{keys: keys, now: now},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Metrics returns the server's metrics, to be served by the admin API
// (WithMetrics) or on a listener of their own.
func (h *Handler) Metrics() *Metrics { return h.metrics }

// ServeHTTP answers a scrape in the Prometheus text format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// Registry is where the metrics are registered, for a caller that adds
// its own or gathers them directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// route returns label's series, making them the first time.
func (m *Metrics) route(label string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm := m.routes[label]; rm != nil {
		return rm
	}
	rm := &routeMetrics{
		label:     label,
		duration:  m.durations.WithLabelValues(label),
		abandoned: m.abandoned.WithLabelValues(label),
	}
	for class := 1; class <= 5; class++ {
		rm.byClass[class] = m.requests.WithLabelValues(label, string(rune('0'+class))+"xx")
	}
	m.routes[label] = rm
	return rm
}

// tagRoutes makes every route of r note its template (less prefix) on the
// request, for the access log to count it under. Done once, after the
// routes are registered: the wrappers are made here, not per request.
func (m *Metrics) tagRoutes(r *mux.Router, prefix string) {
	if m == nil {
		return
	}
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		next := route.GetHandler()
		tpl, err := route.GetPathTemplate()
		if next == nil || err != nil {
			return nil // a subrouter's own route, or one without a path
		}
		label := strings.TrimPrefix(tpl, prefix)
		if label == "" {
			label = "/"
		}
		route.Handler(m.tag(label, next))
		return nil
	})
}

// tag returns next, noting the route label on each request it serves.
func (m *Metrics) tag(label string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return routeTag{rm: m.route(label), next: next}
}

type routeTag struct {
	rm   *routeMetrics
	next http.Handler
}

func (t routeTag) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := noteOf(r.Context()); n != nil {
		n.route = t.rm
	}
	t.next.ServeHTTP(w, r)
}

// count records one answered request. A result the database boundary
// replaced with its 503 is counted as the failure it became.
func (m *Metrics) count(n *requestNote, status int, elapsed time.Duration, clientGone bool) {
	if m == nil {
		return
	}
	rm := n.route
	if rm == nil {
		rm = m.other
	}
	if clientGone {
		rm.abandoned.Inc()
	} else {
		class := status / 100
		if status == 0 { // nothing written: net/http sends 200
			class = 2
		}
		if class >= 1 && class <= 5 {
			rm.byClass[class].Inc()
		}
		rm.duration.Observe(elapsed.Seconds())
	}
	if n.throttledBy != "" {
		if c := m.throttled[n.throttledBy]; c != nil {
			c.Inc()
		}
	}
	o := n.outcome
	if n.unavailable {
		m.unavailable.Inc()
		o = o.failed()
	}
	if c := m.outcomes[o]; c != nil { // none for outcomeNone and introspectionRefused
		c.Inc()
	}
}

// failed is what o becomes when the database failed the request after
// the handler noted it: no token was issued, nobody was signed in, and
// the introspection could not be answered.
func (o outcome) failed() outcome {
	switch o {
	case issuedAuthorizationCode, issuedRefreshToken, issuedClientCredentials, issuedOther:
		return outcomeNone
	case introspectionActive, introspectionInactive, introspectionRefused:
		return introspectionError
	case signInSuccess, signInInvalidCredentials:
		return signInError
	}
	return o
}

// noteOutcome notes on the request what it did, for the metrics.
func noteOutcome(r *http.Request, o outcome) {
	if n := noteOf(r.Context()); n != nil {
		n.outcome = o
	}
}

// noteThrottled notes on the request that a throttle refused it (one of
// the throttle* names).
func noteThrottled(ctx context.Context, by string) {
	if n := noteOf(ctx); n != nil {
		n.throttledBy = by
	}
}

// issuedOutcome is the outcome of an exchange of grantTypes.
func issuedOutcome(grantTypes []string) outcome {
	if len(grantTypes) != 1 {
		return issuedOther
	}
	switch grantTypes[0] {
	case "authorization_code":
		return issuedAuthorizationCode
	case "refresh_token":
		return issuedRefreshToken
	case "client_credentials":
		return issuedClientCredentials
	}
	return issuedOther
}

// poolCollector reports the database pool's statistics and the number of
// SQL statements run, read from the pool when scraped.
type poolCollector struct {
	pool *pgxpool.Pool

	acquired, idle, total, maxConns     *prometheus.Desc
	acquires, emptyAcquires, canceled   *prometheus.Desc
	acquireWait, emptyAcquireWait, stmt *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &poolCollector{
		pool:             pool,
		acquired:         d("authz_db_pool_acquired_connections", "Connections in use by requests."),
		idle:             d("authz_db_pool_idle_connections", "Open connections not in use."),
		total:            d("authz_db_pool_total_connections", "Open connections, and those being opened."),
		maxConns:         d("authz_db_pool_max_connections", "The most connections the pool opens."),
		acquires:         d("authz_db_pool_acquires_total", "Connections taken from the pool."),
		emptyAcquires:    d("authz_db_pool_empty_acquires_total", "Connections taken when none was idle: the caller waited for one to open or come back."),
		canceled:         d("authz_db_pool_canceled_acquires_total", "Waits for a connection given up because the request ended first."),
		acquireWait:      d("authz_db_pool_acquire_seconds_total", "Time spent taking connections from the pool."),
		emptyAcquireWait: d("authz_db_pool_empty_acquire_wait_seconds_total", "Time spent waiting for a connection when none was idle."),
		stmt:             d("authz_db_statements_total", "SQL statements sent to the database."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.maxConns, c.acquires, c.emptyAcquires, c.canceled, c.acquireWait, c.emptyAcquireWait, c.stmt} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, float64(s.AcquiredConns()))
	gauge(c.idle, float64(s.IdleConns()))
	gauge(c.total, float64(s.TotalConns()))
	gauge(c.maxConns, float64(s.MaxConns()))
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(c.canceled, float64(s.CanceledAcquireCount()))
	counter(c.acquireWait, s.AcquireDuration().Seconds())
	counter(c.emptyAcquireWait, s.EmptyAcquireWaitTime().Seconds())
	if n := storage.Statements(c.pool); n >= 0 {
		counter(c.stmt, float64(n))
	}
}

// keyAgeCollector reports how long the signing key has been signing, so
// an alert can catch rotation that stopped. It reads the keys in memory,
// never the database: nothing when none has been read yet.
type keyAgeCollector struct {
	keys *keyManager
	now  func() time.Time
}

var keyAgeDesc = prometheus.NewDesc("authz_signing_key_age_seconds",
	"Seconds since the key that signs ID tokens now became the signing key.", nil, nil)

func (c *keyAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- keyAgeDesc }

func (c *keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	if age, ok := c.keys.signerAge(c.now()); ok {
		ch <- prometheus.MustNewConstMetric(keyAgeDesc, prometheus.GaugeValue, age.Seconds())
	}
}

// metricsPath is where the metrics are served.
const metricsPath = "/metrics"

// Where /metrics is served. The admin listener is the default: it is on
// this machine only (127.0.0.1:8081) unless the operator opens it, it is
// not the issuer's listener (whose every path the world can reach through
// the load balancer), and it needs no port of its own. It serves /metrics
// without the admin token, since a scraper has none to send, and keeps
// every other path behind it. An operator whose Prometheus scrapes from
// another host sets AUTHZ_METRICS_LISTEN to an address of its own, so
// that opening it to the network exposes the metrics and nothing else.

// AdminOption adds to what NewAdmin serves.
type AdminOption func(*admin)

// WithMetrics counts the admin API's requests in m and, when
// cfg.MetricsOnAdmin, serves m at /metrics without the admin token.
func WithMetrics(m *Metrics) AdminOption {
	return func(a *admin) { a.metrics = m }
}

func (a *admin) servesMetrics() bool {
	return a.metrics != nil && !a.cfg.MetricsOff() && a.cfg.MetricsOnAdmin()
}

// extras serves /metrics and, with cfg.Pprof, /debug/pprof/ beside the
// admin API (api). Both are out of the database's request deadline:
// neither queries it, and a CPU profile or trace runs for seconds (ask for
// ?seconds=20 at most: the server's write timeout is 30 s).
func (a *admin) extras(api http.Handler) http.Handler {
	var metrics, profiles http.Handler
	if a.servesMetrics() {
		metrics = a.metrics.tag(metricsPath, a.metrics)
	}
	if a.cfg.Pprof {
		profiles = a.metrics.tag(pprofPath, pprofHandler())
	}
	if metrics == nil && profiles == nil {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case metrics != nil && r.URL.Path == metricsPath:
			metrics.ServeHTTP(w, r)
		case profiles != nil && strings.HasPrefix(r.URL.Path, pprofPath):
			profiles.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

const pprofPath = "/debug/pprof/"

// pprofHandler serves net/http/pprof's pages from a mux of its own: the
// package also registers them on http.DefaultServeMux, which nothing here
// serves.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(pprofPath, pprof.Index) // the index and every named profile
	mux.HandleFunc(pprofPath+"cmdline", pprof.Cmdline)
	mux.HandleFunc(pprofPath+"profile", pprof.Profile)
	mux.HandleFunc(pprofPath+"symbol", pprof.Symbol)
	mux.HandleFunc(pprofPath+"trace", pprof.Trace)
	return mux
}

// MetricsHandler serves m at /metrics and nothing else, for a listener of
// its own (AUTHZ_METRICS_LISTEN).
func MetricsHandler(m *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, m)
	return mux
}
