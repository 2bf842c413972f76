package bench

// The load generator: closed-loop workers, each with its own keep-alive
// HTTP client, repeating one operation for a while. It runs in a child
// process (driveChild), so that the benchmark process's CPU time is the
// server's alone.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The operations, in the order they run: each consuming operation comes
// after the one that produces what it consumes (codes, refresh tokens).
const (
	opIntrospectActive  = "introspect-active"
	opIntrospectUnknown = "introspect-unknown"
	opClientCredentials = "client-credentials"
	opAuthorize         = "authorize"
	opExchange          = "exchange"
	opRefreshShort      = "refresh-short"
	opRefreshLong       = "refresh-long"
	opFlow              = "flow"
	opRevoke            = "revoke"
)

var allOps = []string{
	opIntrospectActive, opIntrospectUnknown, opClientCredentials, opAuthorize,
	opExchange, opRefreshShort, opRefreshLong, opFlow, opRevoke,
}

// opTitles are the operations as the table names them.
var opTitles = map[string]string{
	opIntrospectActive:  "introspect, active token",
	opIntrospectUnknown: "introspect, unknown token",
	opClientCredentials: "client_credentials",
	opAuthorize:         "authorize → code (signed in)",
	opExchange:          "code exchange",
	opRefreshShort:      "refresh, short families",
	opRefreshLong:       "refresh, one long family/worker",
	opFlow:              "authorize → code → token",
	opRevoke:            "revoke refresh token",
}

// itemUse is how an operation uses the job's Items.
type itemUse int

const (
	useNone    itemUse = iota
	useCycle           // round robin over Items (tokens to introspect)
	useConsume         // each item once; the run ends when they run out
	useChain           // worker i starts from Items[i] and follows what it gets
)

var opUses = map[string]itemUse{
	opIntrospectActive:  useCycle,
	opIntrospectUnknown: useCycle,
	opExchange:          useConsume,
	opRefreshShort:      useConsume,
	opRefreshLong:       useChain,
	opRevoke:            useConsume,
}

// Job is one run of the load generator: one operation at one concurrency.
type Job struct {
	Op          string        `json:"op"`
	Issuer      string        `json:"issuer"`
	Concurrency int           `json:"concurrency"`
	Warmup      time.Duration `json:"warmup"`
	Duration    time.Duration `json:"duration"`
	// MaxOutputs, when positive, ends the run once that many outputs have
	// been produced (topping up a supply).
	MaxOutputs int64 `json:"max_outputs,omitempty"`
	// OutputAccess makes token operations output access tokens instead
	// of refresh tokens.
	OutputAccess bool     `json:"output_access,omitempty"`
	Items        []string `json:"items,omitempty"`
	// Sessions are login session cookies; worker i uses Sessions[i%n].
	Sessions    []string `json:"sessions,omitempty"`
	CookieName  string   `json:"cookie_name,omitempty"`
	ClientID    string   `json:"client_id"`
	Secret      string   `json:"secret"`
	RedirectURI string   `json:"redirect_uri,omitempty"`
	Scope       string   `json:"scope,omitempty"`
}

// JobResult is what a run measured, from the client's side.
type JobResult struct {
	Requests int64         `json:"requests"` // measured: after the warm-up
	Errors   int64         `json:"errors"`   // measured requests that failed
	Elapsed  time.Duration `json:"elapsed"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	// Used is how many of Items a consuming run took, warm-up included.
	Used int `json:"used"`
	// Exhausted: a consuming run ran out of items before its time.
	Exhausted bool `json:"exhausted,omitempty"`
	// Outputs are codes or tokens the run produced, warm-up included.
	Outputs []string `json:"outputs,omitempty"`
	// LongestChain is the most refreshes one worker chained (refresh-long).
	LongestChain int `json:"longest_chain,omitempty"`
	// ErrorSample describes the first failure.
	ErrorSample string `json:"error_sample,omitempty"`
	// ClientCPU is the generator's own CPU time while measuring.
	ClientCPU time.Duration `json:"client_cpu"`
}

// errSupply ends a worker whose run has no items left.
var errSupply = errors.New("no items left")

// maxConsecutiveErrors stops a worker that only fails, so a broken set-up
// ends the run instead of spinning.
const maxConsecutiveErrors = 50

// driver runs one job.
type driver struct {
	job        Job
	do         func(ctx context.Context, w *worker, item string) (string, error)
	use        itemUse
	next       atomic.Int64 // index of the next item
	outputs    atomic.Int64
	prefix     string // the issuer's path, under which the endpoints are
	authTarget string // the authorize request's path and query
	postHeader string // header lines of a POST with the client's credentials
}

// worker is one closed loop: a request, its answer, the next request.
type worker struct {
	id        int
	client    *rawClient
	chain     string // refresh-long: the worker's current refresh token
	refreshes int
	lat       []time.Duration
	requests  int64
	errors    int64
	outputs   []string
	firstErr  error
	exhausted bool
}

func newDriver(job Job) (*driver, error) {
	d := &driver{job: job, use: opUses[job.Op]}
	switch job.Op {
	case opIntrospectActive, opIntrospectUnknown:
		d.do = d.introspect
	case opClientCredentials:
		d.do = d.clientCredentials
	case opAuthorize:
		d.do = func(ctx context.Context, w *worker, _ string) (string, error) { return d.authorize(ctx, w) }
	case opExchange:
		d.do = d.exchange
	case opRefreshShort, opRefreshLong:
		d.do = d.refresh
	case opFlow:
		d.do = d.flow
	case opRevoke:
		d.do = d.revoke
	default:
		return nil, fmt.Errorf("unknown operation %q", job.Op)
	}
	if job.Concurrency < 1 {
		return nil, fmt.Errorf("concurrency %d", job.Concurrency)
	}
	if d.use != useNone && len(job.Items) == 0 {
		return nil, fmt.Errorf("%s needs items and has none", job.Op)
	}
	if d.use == useChain && len(job.Items) < job.Concurrency {
		return nil, fmt.Errorf("%s needs a refresh token per worker: %d for %d workers", job.Op, len(job.Items), job.Concurrency)
	}
	if (job.Op == opAuthorize || job.Op == opFlow) && len(job.Sessions) == 0 {
		return nil, fmt.Errorf("%s needs login sessions", job.Op)
	}
	q := url.Values{
		"response_type": {"code"}, "client_id": {job.ClientID}, "redirect_uri": {job.RedirectURI},
		"scope": {job.Scope}, "state": {"bench-state-0123456789"}, "nonce": {"bench-nonce-0123456789"},
	}
	u, err := url.Parse(job.Issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	d.prefix = strings.TrimSuffix(u.Path, "/")
	d.authTarget = d.prefix + "/oauth2/authorize?" + q.Encode()
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(job.ClientID) + ":" + url.QueryEscape(job.Secret)))
	d.postHeader = "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic " + basic + "\r\n"
	return d, nil
}

// hooks let the caller see the phases of a run: warm returns when the
// measurement may start; done is called as soon as it has ended.
type hooks struct {
	warm, done func() error
}

// run drives the job: the warm-up, then the measured period.
func (d *driver) run(ctx context.Context, h hooks) (JobResult, error) {
	workers := make([]*worker, d.job.Concurrency)
	for i := range workers {
		c, err := newRawClient(d.job.Issuer)
		if err != nil {
			return JobResult{}, err
		}
		workers[i] = &worker{id: i, client: c}
		if d.use == useChain {
			workers[i].chain = d.job.Items[i]
		}
		defer c.close()
	}
	if d.use == useChain {
		d.next.Store(int64(len(workers)))
	}
	d.phase(ctx, workers, time.Now().Add(d.job.Warmup), false)
	if h.warm != nil {
		if err := h.warm(); err != nil {
			return JobResult{}, err
		}
	}
	cpu0 := processCPU()
	start := time.Now()
	d.phase(ctx, workers, start.Add(d.job.Duration), true)
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if h.done != nil {
		if err := h.done(); err != nil {
			return JobResult{}, err
		}
	}
	res := d.result(workers, elapsed)
	res.ClientCPU = cpu
	return res, ctx.Err()
}

// phase runs every worker until the deadline (or until it runs out of
// items, or MaxOutputs is reached) and waits for them all.
func (d *driver) phase(ctx context.Context, workers []*worker, until time.Time, measure bool) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { d.loop(ctx, w, until, measure) })
	}
	wg.Wait()
}

func (d *driver) loop(ctx context.Context, w *worker, until time.Time, measure bool) {
	failures := 0
	for ctx.Err() == nil && !w.exhausted && time.Now().Before(until) {
		if limit := d.job.MaxOutputs; limit > 0 && d.outputs.Load() >= limit {
			return
		}
		item, err := d.item(w)
		if err != nil {
			w.exhausted = true
			return
		}
		t0 := time.Now()
		out, err := d.do(ctx, w, item)
		lat := time.Since(t0)
		if ctx.Err() != nil {
			return // cut short: neither a success nor a failure
		}
		if measure {
			w.requests++
			w.lat = append(w.lat, lat)
		}
		if err != nil {
			failures++
			if measure {
				w.errors++
			}
			if w.firstErr == nil {
				w.firstErr = err
			}
			if failures >= maxConsecutiveErrors {
				return
			}
			continue
		}
		failures = 0
		if out != "" {
			w.outputs = append(w.outputs, out)
			d.outputs.Add(1)
		}
	}
}

// item picks the request's item according to the operation's use.
func (d *driver) item(w *worker) (string, error) {
	items := d.job.Items
	switch d.use {
	case useCycle:
		return items[int(d.next.Add(1)-1)%len(items)], nil
	case useConsume:
		i := int(d.next.Add(1) - 1)
		if i >= len(items) {
			return "", errSupply
		}
		return items[i], nil
	case useChain:
		return w.chain, nil
	}
	return "", nil
}

func (d *driver) result(workers []*worker, elapsed time.Duration) JobResult {
	res := JobResult{Elapsed: elapsed}
	var lat []time.Duration
	for _, w := range workers {
		res.Requests += w.requests
		res.Errors += w.errors
		lat = append(lat, w.lat...)
		res.Exhausted = res.Exhausted || w.exhausted
		res.LongestChain = max(res.LongestChain, w.refreshes)
		if res.ErrorSample == "" && w.firstErr != nil {
			res.ErrorSample = w.firstErr.Error()
		}
		if d.use == useChain {
			// The end of each chain is the newest token of its family.
			res.Outputs = append(res.Outputs, w.chain)
		} else {
			res.Outputs = append(res.Outputs, w.outputs...)
		}
	}
	if d.use == useConsume {
		res.Used = min(int(d.next.Load()), len(d.job.Items))
	}
	if d.use == useChain {
		res.Used = len(workers)
	}
	slices.Sort(lat)
	res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return res
}

// percentile of sorted durations: the smallest value that at least
// fraction p of them do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// The operations.

func (d *driver) introspect(ctx context.Context, w *worker, token string) (string, error) {
	status, body, err := d.post(ctx, w, "/oauth2/introspect", url.Values{"token": {token}, "token_type_hint": {"access_token"}})
	if err != nil {
		return "", err
	}
	var out struct {
		Active *bool `json:"active"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Active == nil {
		return "", answerError("introspect", status, body)
	}
	if want := d.job.Op == opIntrospectActive; *out.Active != want {
		return "", fmt.Errorf("introspect: active is %v, want %v", *out.Active, want)
	}
	return "", nil
}

func (d *driver) clientCredentials(ctx context.Context, w *worker, _ string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if d.job.Scope != "" {
		form.Set("scope", d.job.Scope)
	}
	_, err := d.tokenRequest(ctx, w, form)
	return "", err
}

// authorize asks for a code with the worker's login session; the client
// skips consent, so the answer is the redirect with the code.
func (d *driver) authorize(ctx context.Context, w *worker) (string, error) {
	session := d.job.Sessions[w.id%len(d.job.Sessions)]
	a, err := w.client.do(ctx, http.MethodGet, d.authTarget, "Cookie: "+d.job.CookieName+"="+session+"\r\n", nil)
	if err != nil {
		return "", err
	}
	if a.status != http.StatusSeeOther && a.status != http.StatusFound {
		return "", answerError("authorize", a.status, a.body)
	}
	loc, err := url.Parse(a.location)
	if err != nil {
		return "", fmt.Errorf("authorize: redirect: %w", err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		return "", fmt.Errorf("authorize: redirected without a code: error=%q %q", loc.Query().Get("error"), loc.Query().Get("error_description"))
	}
	return code, nil
}

func (d *driver) exchange(ctx context.Context, w *worker, code string) (string, error) {
	return d.tokenRequest(ctx, w, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {d.job.RedirectURI},
	})
}

func (d *driver) refresh(ctx context.Context, w *worker, token string) (string, error) {
	out, err := d.tokenRequest(ctx, w, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}})
	if err == nil && d.use == useChain {
		w.chain = out
		w.refreshes++
		return "", nil
	}
	return out, err
}

func (d *driver) flow(ctx context.Context, w *worker, _ string) (string, error) {
	code, err := d.authorize(ctx, w)
	if err != nil {
		return "", err
	}
	return d.exchange(ctx, w, code)
}

func (d *driver) revoke(ctx context.Context, w *worker, token string) (string, error) {
	status, body, err := d.post(ctx, w, "/oauth2/revoke", url.Values{"token": {token}, "token_type_hint": {"refresh_token"}})
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", answerError("revoke", status, body)
	}
	return "", nil
}

// tokenRequest posts to the token endpoint and returns the refresh token
// it issued (or the access token, with OutputAccess).
func (d *driver) tokenRequest(ctx context.Context, w *worker, form url.Values) (string, error) {
	status, body, err := d.post(ctx, w, "/oauth2/token", form)
	if err != nil {
		return "", err
	}
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		return "", answerError("token "+form.Get("grant_type"), status, body)
	}
	if d.job.OutputAccess {
		return out.AccessToken, nil
	}
	if form.Get("grant_type") != "client_credentials" && out.RefreshToken == "" {
		return "", fmt.Errorf("token %s: no refresh token issued", form.Get("grant_type"))
	}
	return out.RefreshToken, nil
}

// post sends a form with the job's client credentials in HTTP Basic, as
// RFC 6749 2.3.1 encodes them.
func (d *driver) post(ctx context.Context, w *worker, path string, form url.Values) (int, []byte, error) {
	a, err := w.client.do(ctx, http.MethodPost, d.prefix+path, d.postHeader, []byte(form.Encode()))
	return a.status, a.body, err
}

func answerError(what string, status int, body []byte) error {
	b := string(body)
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	return fmt.Errorf("%s: answered %d: %s", what, status, strings.TrimSpace(b))
}
