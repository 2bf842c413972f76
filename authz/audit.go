package authz

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Audit events: one log line, message "audit", for each security-relevant
// action, with a stable event name and the same fields every time:
// event, outcome, request_id, client_id, subject (a user id), client_addr,
// then what the event adds. They come from one emitter, Auditor, over the
// server's logger (or the admin API's, or the CLI's).
//
// A handler does not log the event itself: it notes it on the request
// (audit), and the access log emits it once the answer is final. A request
// the database failed is answered 503 by guardDatabase and nothing it did
// was committed: its action events are dropped, and only what was
// observed (a reused code or refresh token, a throttle's refusal) is
// still told, marked database_failed.
//
// An event never carries a token, code, secret, password, registration
// access token or assertion: only ids, names, and counts.

// Audit event names.
const (
	EventSignInSuccess      = "signin.success"
	EventSignInFailure      = "signin.failure" // reason: unknown_user, wrong_password, disabled, throttled
	EventLockout            = "lockout"        // throttle: address, account, share, client
	EventConsentGranted     = "consent.granted"
	EventConsentDenied      = "consent.denied"
	EventConsentWithdrawn   = "consent.withdrawn"
	EventTokenIssued        = "token.issued" // grant_type
	EventTokenRefreshed     = "token.refreshed"
	EventTokenRevoked       = "token.revoked"
	EventCodeReuse          = "code.reuse_detected"
	EventRefreshReuse       = "refresh.reuse_detected"
	EventClientCreated      = "client.created"
	EventClientUpdated      = "client.updated"
	EventClientDeleted      = "client.deleted"
	EventClientSecretRotate = "client.secret_rotated"
	EventUserCreated        = "user.created"
	EventUserUpdated        = "user.updated"
	EventUserDeleted        = "user.deleted"
	EventUserLoggedOut      = "user.sessions_deleted"
	EventUserUnlocked       = "user.unlocked"
	EventScopeCreated       = "scope.created" // scope: the name
	EventScopeUpdated       = "scope.updated"
	EventScopeDeleted       = "scope.deleted"
	EventKeyRotated         = "key.rotated"
	EventAdminRequest       = "admin.request" // method, route, status
)

// Audit outcomes.
const (
	OutcomeSuccess  = "success"
	OutcomeFailure  = "failure"
	OutcomeDenied   = "denied"
	OutcomeDetected = "detected"
	OutcomeRefused  = "refused"
)

// AuditEvent is one audit event. Attrs must never hold a secret.
type AuditEvent struct {
	Event    string
	Outcome  string
	ClientID string
	Subject  string
	Attrs    []slog.Attr

	// observed: told even when the database failed the request, since it
	// was seen, not done.
	observed bool
}

// Auditor emits audit events on a logger, at info.
type Auditor struct{ log *slog.Logger }

// NewAuditor returns an Auditor writing to log (nowhere when nil).
func NewAuditor(log *slog.Logger) *Auditor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{log: log}
}

// Emit logs e now. requestID and addr are empty for what no request did
// (the CLI).
func (a *Auditor) Emit(ctx context.Context, e AuditEvent, requestID string, addr netip.Addr) {
	if a == nil {
		return
	}
	client := ""
	if addr.IsValid() {
		client = addr.String()
	}
	attrs := append([]slog.Attr{
		slog.String("event", e.Event),
		slog.String("outcome", e.Outcome),
		slog.String("request_id", requestID),
		slog.String("client_id", e.ClientID),
		slog.String("subject", e.Subject),
		slog.String("client_addr", client),
	}, e.Attrs...)
	a.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}

// audit notes e on the request, for the access log to emit once the
// answer is final (flushAudit).
func audit(ctx context.Context, e AuditEvent) {
	if n := noteOf(ctx); n != nil {
		n.audit = append(n.audit, e)
	}
}

// auditObserved notes e as audit does, to be told even if the database
// fails the request.
func auditObserved(ctx context.Context, e AuditEvent) {
	e.observed = true
	audit(ctx, e)
}

// flushAudit emits what the request noted, as it was finally answered
// (status), and for an admin request the admin.request event.
func (a *Auditor) flushAudit(r *http.Request, n *requestNote, status int) {
	if len(n.audit) == 0 && !n.adminAudit {
		return
	}
	addr := n.clientAddr
	for _, e := range n.audit {
		if n.unavailable {
			if !e.observed {
				continue // not done: nothing was committed
			}
			e.Attrs = append(e.Attrs, slog.Bool("database_failed", true))
		}
		a.Emit(r.Context(), e, n.id, addr)
	}
	if n.adminAudit {
		if status == 0 {
			status = http.StatusOK
		}
		outcome := OutcomeSuccess
		if status >= 400 {
			outcome = OutcomeFailure
		}
		route := n.adminRoute
		if route == "" {
			route = "unmatched"
			if strings.HasPrefix(r.URL.Path, pprofPath) {
				route = pprofPath
			}
		}
		a.Emit(r.Context(), AuditEvent{Event: EventAdminRequest, Outcome: outcome, Attrs: []slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.Int("status", status),
		}}, n.id, addr)
	}
}

// noteClientAddr notes on each request the client's address, for its
// audit events, as addr tells it.
func noteClientAddr(addr func(*http.Request) netip.Addr) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n := noteOf(r.Context()); n != nil {
				n.clientAddr = addr(r)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// auditAdminRequests makes every admin API call one admin.request event,
// scrapes of /metrics aside: Prometheus's every 15 s would bury the rest.
func (a *admin) auditAdminRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := noteOf(r.Context()); n != nil {
			n.clientAddr = peerAddr(r.RemoteAddr)
			n.adminAudit = !(a.servesMetrics() && r.URL.Path == metricsPath)
		}
		next.ServeHTTP(w, r)
	})
}

// noteAdminRoute notes the matched route's template, for admin.request.
func noteAdminRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := noteOf(r.Context()); n != nil {
			if route := mux.CurrentRoute(r); route != nil {
				n.adminRoute, _ = route.GetPathTemplate()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// auditSignInFailure notes a sign-in refused for its credentials, with
// the reason storage gave (storage.CredentialsError).
func auditSignInFailure(ctx context.Context, clientID string, err error) {
	reason, subject := "invalid_credentials", ""
	var ce *storage.CredentialsError
	if errors.As(err, &ce) {
		reason, subject = ce.Reason, ce.UserID
	}
	audit(ctx, AuditEvent{Event: EventSignInFailure, Outcome: OutcomeFailure, ClientID: clientID, Subject: subject,
		Attrs: []slog.Attr{slog.String("reason", reason)}})
}

// auditLockout notes a throttle's refusal (one of the throttle* names).
func auditLockout(ctx context.Context, clientID, by string, retryAfter time.Duration) {
	auditObserved(ctx, AuditEvent{Event: EventLockout, Outcome: OutcomeRefused, ClientID: clientID, Attrs: []slog.Attr{
		slog.String("throttle", by), slog.Int("retry_after_seconds", waitSeconds(retryAfter)),
	}})
}

// auditIssued notes a successful token exchange: token.refreshed for the
// refresh grant, token.issued with the grant type for the others.
func auditIssued(ctx context.Context, ar fosite.AccessRequester) {
	event := EventTokenIssued
	if ar.GetGrantTypes().ExactOne("refresh_token") {
		event = EventTokenRefreshed
	}
	audit(ctx, AuditEvent{Event: event, Outcome: OutcomeSuccess, ClientID: ar.GetClient().GetID(), Subject: subjectOf(ar.GetSession()),
		Attrs: []slog.Attr{slog.String("grant_type", strings.Join(ar.GetGrantTypes(), " ")),
			slog.String("scope", strings.Join(ar.GetGrantedScopes(), " "))}})
}

// auditCodeReuse notes a second use of an authorization code, whose
// tokens were revoked.
func auditCodeReuse(ctx context.Context, clientID string, sess fosite.Session) {
	auditObserved(ctx, AuditEvent{Event: EventCodeReuse, Outcome: OutcomeDetected, ClientID: clientID, Subject: subjectOf(sess),
		Attrs: []slog.Attr{slog.Bool("tokens_revoked", true)}})
}

// auditRefreshReuse notes a rotated refresh token used again: its whole
// family revoked, or, within the reuse window or during the rotation,
// spared.
func auditRefreshReuse(ctx context.Context, ar fosite.AccessRequester, revoked bool) {
	if ar == nil || ar.GetClient() == nil {
		return
	}
	auditObserved(ctx, AuditEvent{Event: EventRefreshReuse, Outcome: OutcomeDetected, ClientID: ar.GetClient().GetID(),
		Subject: subjectOf(ar.GetSession()), Attrs: []slog.Attr{slog.Bool("tokens_revoked", revoked)}})
}

// auditRevoked notes a revocation request accepted (RFC 7009): the token,
// if it was one of the client's, is no longer valid. fosite does not say
// whose token it was; the client is the one that authenticated.
func auditRevoked(r *http.Request) {
	id := secretClientID(r, r.PostForm)
	if id == "" {
		id = r.PostForm.Get("client_id")
	}
	var attrs []slog.Attr
	if hint := r.PostForm.Get("token_type_hint"); hint == "access_token" || hint == "refresh_token" {
		attrs = append(attrs, slog.String("token_type_hint", hint)) // only these: the client writes it
	}
	audit(r.Context(), AuditEvent{Event: EventTokenRevoked, Outcome: OutcomeSuccess, ClientID: id, Attrs: attrs})
}

func subjectOf(s fosite.Session) string {
	if s == nil {
		return ""
	}
	return s.GetSubject()
}

// auditClient notes a change to a client, made through source ("admin",
// "registration").
func auditClient(ctx context.Context, event, clientID, source string, attrs ...slog.Attr) {
	audit(ctx, AuditEvent{Event: event, Outcome: OutcomeSuccess, ClientID: clientID,
		Attrs: append([]slog.Attr{slog.String("source", source)}, attrs...)})
}

// auditUser notes a change to a user, made through source.
func auditUser(ctx context.Context, event, userID, source string, attrs ...slog.Attr) {
	audit(ctx, AuditEvent{Event: event, Outcome: OutcomeSuccess, Subject: userID,
		Attrs: append([]slog.Attr{slog.String("source", source)}, attrs...)})
}
