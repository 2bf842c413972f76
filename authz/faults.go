package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Faults are told truthfully. Every request's database work runs under
// Config.RequestTimeout; the pool's tracer records any database failure in
// the request's context (storage.FaultRecorder), whichever path the query
// took and whether or not fosite passed the error on; and this boundary
// turns a request that met one into a 503 temporarily_unavailable with
// Retry-After. Nothing such a request did is committed (storage.Store.Commit
// refuses), so a 503 never hides work done, a 2xx never claims work not
// done, and a 4xx never blames the client for the server's failure.

// retryAfterSeconds is what a 503 asks clients to wait before retrying.
const retryAfterSeconds = "5"

// requestNote is what the access log learns about a request from the
// layers inside it.
type requestNote struct {
	id    string
	cause error // why the request failed on the server's side

	// For the metrics (Metrics.count): the route that served the request,
	// what it did, the throttle that refused it, and whether the database
	// failed it (its answer replaced with a 503).
	route       *routeMetrics
	outcome     outcome
	throttledBy string
	unavailable bool

	// For the audit events (audit.go): those noted, the client's address,
	// and for an admin request its route template.
	audit      []AuditEvent
	clientAddr netip.Addr
	adminAudit bool
	adminRoute string
}

type requestNoteKey struct{}

func noteOf(ctx context.Context) *requestNote {
	n, _ := ctx.Value(requestNoteKey{}).(*requestNote)
	return n
}

// requestID returns the id the access log gave the request, or "".
func requestID(ctx context.Context) string {
	if n := noteOf(ctx); n != nil {
		return n.id
	}
	return ""
}

// failed records why the request failed on the server's side, for its one
// access log line (at error, or at info when the client went away).
// Handlers call it instead of logging a 5xx themselves.
func failed(ctx context.Context, err error) {
	if n := noteOf(ctx); n != nil && n.cause == nil && err != nil {
		n.cause = describeError(err)
	}
}

// describeError is err with what fosite keeps apart from its message: the
// wrapped cause and the debug text.
func describeError(err error) error {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.Cause() == nil && rfc.DebugField == "" {
		return err
	}
	return fmt.Errorf("%s: %v %s", rfc.ErrorField, rfc.Cause(), rfc.DebugField)
}

// accessLog gives every request an id (echoed in X-Request-Id) and logs one
// line for it, msg, with the cause of a server-side failure. Only the path
// is logged: query strings carry codes. A client that hung up is not a
// server error: it is logged at info, as such, whatever was answered.
// It counts every request in m (when not nil), as it was finally answered;
// scrapes of /metrics are logged at debug only, not to fill the log.
// It emits the request's audit events on au, once the answer is final.
func accessLog(log *slog.Logger, msg string, m *Metrics, au *Auditor) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			note := &requestNote{id: newRequestID()}
			w.Header().Set("X-Request-Id", note.id)
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestNoteKey{}, note)))
			elapsed := time.Since(start)
			gone := r.Context().Err() != nil
			m.count(note, rec.status, elapsed, gone)
			au.flushAudit(r, note, rec.status)
			attrs := []any{"id", note.id, "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "duration_ms", elapsed.Milliseconds()}
			switch {
			case note.route != nil && (note.route.label == metricsPath || note.route.label == "/static/") && rec.status < 400:
				// Scrapes and page assets would drown the requests that
				// matter (and dev's banner) at info.
				log.Debug(msg, attrs...)
			case gone:
				if note.cause != nil {
					attrs = append(attrs, "cause", note.cause.Error())
				}
				log.Info(msg+": the client went away", append(attrs, "client_gone", true)...)
			case rec.status >= 500:
				if note.cause != nil {
					attrs = append(attrs, "cause", note.cause.Error())
				}
				log.Error(msg, attrs...)
			default:
				log.Info(msg, attrs...)
			}
		})
	}
}

// guardDatabase bounds the request's database work by timeout and answers
// with unavailable instead of whatever the handler wrote when the database
// failed the request. The deadline starts once the body has arrived: a
// client that sends it slowly spends its own time (the server's read
// timeout bounds it), not the database's, and is not told of an outage.
func guardDatabase(timeout time.Duration, unavailable func(http.ResponseWriter, *http.Request)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if timeout <= 0 {
				timeout = DefaultRequestTimeout
			}
			bufferBody(r)
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			ctx, faults := storage.WithFaultRecorder(ctx)
			r = r.WithContext(ctx)
			fw := &faultWriter{ResponseWriter: w, r: r, faults: faults, answer: unavailable}
			next.ServeHTTP(fw, r)
			fw.decide(0)
		})
	}
}

// maxBufferedBody is the most of a body read before the deadline starts:
// every endpoint's own limit is at most this.
const maxBufferedBody = 64 << 10

// bufferBody reads the request body, up to maxBufferedBody, into memory.
// The handler reads the same bytes, and meets what lay beyond them (a body
// too large for its limit, or the read's error) as it would have.
func bufferBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
	var rest io.Reader
	switch {
	case err != nil:
		rest = errReader{err}
	case len(buf) > maxBufferedBody:
		rest = r.Body
	default:
		rest = strings.NewReader("")
	}
	r.Body = bufferedBody{io.MultiReader(bytes.NewReader(buf), rest), r.Body}
}

type bufferedBody struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// faultWriter holds back the handler's answer until its first byte, then
// lets it through, or replaces it when a database failure was recorded.
type faultWriter struct {
	http.ResponseWriter
	r        *http.Request
	faults   *storage.FaultRecorder
	answer   func(http.ResponseWriter, *http.Request)
	decided  bool
	replaced bool
}

// decide is called with the status the handler is about to write (0 when
// it wrote none). A 503 of the handler's own stands: it already tells the
// truth, in its own words.
func (f *faultWriter) decide(status int) {
	if f.decided {
		return
	}
	f.decided = true
	err := f.faults.Err()
	if err == nil && status >= 500 {
		// A server error with no failed query recorded, once the
		// request's deadline has passed: its database work was cut short
		// before any query could fail (a COMMIT not sent in time), which
		// is the same outage.
		if cerr := f.r.Context().Err(); errors.Is(cerr, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: the request's deadline passed", storage.ErrUnavailable)
		}
	}
	if err == nil || status == http.StatusServiceUnavailable {
		return
	}
	f.replaced = true
	if n := noteOf(f.r.Context()); n != nil {
		n.cause = err // the database's failure is the real reason
		n.unavailable = true
	}
	h := f.ResponseWriter.Header()
	for _, k := range []string{"Set-Cookie", "Location", "Content-Type", "Content-Length", "Content-Encoding", "WWW-Authenticate", "Cache-Control", "Pragma", "Vary"} {
		h.Del(k)
	}
	f.answer(f.ResponseWriter, f.r)
}

func (f *faultWriter) WriteHeader(code int) {
	if code < 200 { // informational: the real answer is still to come
		f.ResponseWriter.WriteHeader(code)
		return
	}
	f.decide(code)
	if !f.replaced {
		f.ResponseWriter.WriteHeader(code)
	}
}

func (f *faultWriter) Write(b []byte) (int, error) {
	f.decide(http.StatusOK)
	if f.replaced {
		return len(b), nil
	}
	return f.ResponseWriter.Write(b)
}

func (f *faultWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// writeUnavailable is the 503 of machine endpoints (RFC 6749 4.1.2.1's
// temporarily_unavailable; RFC 7009 2.2.1 for revocation). It says that
// nothing was changed, except after a COMMIT whose outcome could not be
// learnt (storage.ErrOutcomeUnknown): then it says so.
func writeUnavailable(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", retryAfterSeconds)
	w.WriteHeader(http.StatusServiceUnavailable)
	if r != nil && storage.OutcomeUnknown(r.Context()) {
		_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":` + strconv.Quote(outcomeUnknownDescription) + `}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The authorization server cannot reach its database right now; nothing was changed. Retry later."}` + "\n"))
}

// outcomeUnknownDescription is the 503's description when the database
// stopped answering while committing the request's work.
const outcomeUnknownDescription = "The authorization server lost its database while committing this request, and cannot tell whether it took effect. Retry later; a code or refresh token may then be reported as already used."

// unavailable answers a request the database failed: a page for what a
// person sees in a browser, JSON for machines.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	if !h.browserPath(r.URL.Path) {
		writeUnavailable(w, r)
		return
	}
	w.Header().Set("Retry-After", retryAfterSeconds)
	w.Header().Set("Cache-Control", "no-store")
	h.pages.renderError(w, http.StatusServiceUnavailable, errorPage{
		Title:   "Temporarily unavailable",
		Message: "Sign-in is unavailable for a moment. Nothing is wrong with your account or the app: please wait a few seconds and try again.",
		Code:    "temporarily_unavailable",
	})
}

// browserPath reports whether people, not programs, load path: the pages
// of the authorize flow, the device verification page and logout.
func (h *Handler) browserPath(path string) bool {
	path = strings.TrimPrefix(path, h.base)
	return path == "/oauth2/authorize" || path == "/device" || path == "/oauth2/logout" || path == "/" || path == ""
}

// refuseForeignTarget refuses a request whose target is in absolute form
// (GET http://host/path) for a host other than the issuer's: such a
// request is no browser's, and the router would otherwise redirect it to
// a cleaned URL on that host.
func refuseForeignTarget(issuerHost string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.IsAbs() && !strings.EqualFold(r.URL.Host, issuerHost) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte("the request target names another host\n"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
