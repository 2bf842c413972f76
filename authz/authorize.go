package authz

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

const maxFormBytes = 64 << 10

// cookieNames are the names of our cookies. Under an https issuer at the
// root of its host they carry the __Host- prefix, which makes the browser
// refuse them when set by a sibling domain or without Secure.
func cookieNames(secure bool, base string) (session, csrf string) {
	if secure && base == "" {
		return "__Host-authz_session", "__Host-authz_csrf"
	}
	return "authz_session", "authz_csrf"
}

// Fields our own forms add to an authorize request. They are taken out
// before fosite sees the request, so they never reach storage.
var pageFields = []string{"action", "csrf_token", "username", "password", "login_proof"}

// pageInput is what a person submitted on one of our pages.
type pageInput struct {
	action, csrf, username, password, loginProof string
}

// authorize serves GET and POST /oauth2/authorize: it validates the request
// with fosite, then asks the user to log in and to consent as needed, and
// finally issues the code. The pages post back here with the original
// parameters as hidden fields, so fosite validates them again each time.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.authorizeError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The request could not be parsed.").WithWrap(err))
		return
	}
	var in pageInput
	if r.Method == http.MethodPost {
		in = pageInput{r.PostForm.Get("action"), r.PostForm.Get("csrf_token"), r.PostForm.Get("username"), r.PostForm.Get("password"), r.PostForm.Get("login_proof")}
	}
	for _, f := range pageFields {
		r.Form.Del(f)
		r.PostForm.Del(f)
	}
	// A request_uri names a pushed request (RFC 9126 4), whose parameters
	// replace the request's (see par.go). Where PAR is required, nothing
	// else is accepted, on GET or on a page's POST.
	if r.Form.Has("request_uri") {
		var err error
		if r, err = h.resolvePushed(w, r); err != nil {
			h.authorizeError(w, r, nil, err)
			return
		}
		ctx = r.Context()
	} else if h.cfg.RequirePAR {
		h.authorizeError(w, r, nil, errPARRequired())
		return
	}

	// Every redirect to the client passes through rw, which adds iss
	// (RFC 9207) and drops the stand-in state (below).
	rw := &clientRedirectWriter{ResponseWriter: w, iss: h.cfg.Issuer}
	w = rw
	// OAuth 2.1 lets a client that uses PKCE leave out state, and strict
	// client libraries do. fosite insists on one, so it gets a stand-in that
	// never leaves this server: it is dropped from the redirect and from
	// what our pages carry. Without PKCE, state stays required.
	if mode := r.Form.Get("response_mode"); r.Form.Get("state") == "" && r.Form.Get("code_challenge") != "" && r.Form.Get("response_type") == "code" && (mode == "" || mode == "query") {
		r.Form.Set("state", standInState)
		rw.dropState = true
	}

	// A parameter sent twice (RFC 6749 3.1 forbids it) is refused before
	// anyone signs in. Where the client or its redirect is in doubt there
	// is nowhere safe to send the error; otherwise it goes back to the app.
	dup := duplicateParameter(r.Form)
	if dup == "client_id" || dup == "redirect_uri" || dup == "response_mode" {
		h.authorizeError(w, r, nil, errDuplicate(dup))
		return
	}
	ar, err := h.provider.NewAuthorizeRequest(ctx, r)
	if pushedOf(r) == nil && ar != nil && ar.GetClient() != nil && ar.GetClient().GetID() != "" && h.parRequired(ar.GetClient()) {
		h.authorizeError(w, r, nil, errPARRequired())
		return
	}
	if ar != nil && ar.IsRedirectURIValid() {
		rw.redirect = ar.GetRedirectURI()
	}
	if err == nil && dup != "" {
		err = errDuplicate(dup)
	}
	if err == nil {
		err = requestResources(ar)
	}
	if err != nil {
		h.authorizeError(w, r, ar, err)
		return
	}
	h.allowFormRedirect(w, ar.GetRedirectURI())

	if in.action != "" && !h.csrfValid(r, in.csrf) {
		h.pages.renderError(w, http.StatusForbidden, errorPage{
			Title:     "This form has expired",
			Message:   "For your security the form could not be accepted. Go back to the app and start again.",
			Code:      "invalid_request",
			Reason:    h.devReason(csrfReason),
			RequestID: requestID(ctx),
		})
		return
	}
	client, ok := ar.GetClient().(*storage.Client)
	if !ok {
		h.authorizeError(w, r, ar, fosite.ErrServerError.WithDebug("unexpected client type"))
		return
	}
	// fosite checks PKCE only when it issues the code; a public client's
	// request without it is refused before anyone logs in for nothing.
	// The implicit flow issues no code, so it has nothing to bind to.
	if ar.GetResponseTypes().Has("code") {
		if err := h.checkPKCE(client, ar.GetRequestForm()); err != nil {
			h.authorizeError(w, r, ar, err)
			return
		}
	}
	p, err := parsePrompt(ar.GetRequestForm())
	if err != nil {
		h.authorizeError(w, r, ar, err)
		return
	}
	p.applyDefaultMaxAge(client)

	var (
		user     *storage.User
		authTime time.Time
		fresh    bool // the user logged in during this request
	)
	if in.action == "login" {
		if user, authTime, ok = h.login(w, r, ar, client, in); !ok {
			return
		}
		fresh = true
	} else {
		if user, authTime, err = h.currentUser(ctx, r); err != nil {
			h.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		if user != nil && !h.loginSatisfies(r, p, in, client.ID, authTime) {
			if p.none {
				h.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The user must log in again (max_age)."))
				return
			}
			h.showLogin(w, r, ar, client, user.Username, "", http.StatusOK)
			return
		}
	}
	if user == nil {
		if p.none {
			h.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The user is not logged in."))
			return
		}
		h.showLogin(w, r, ar, client, ar.GetRequestForm().Get("login_hint"), "", http.StatusOK)
		return
	}

	scopes := ar.GetRequestedScopes()
	switch in.action {
	case "deny":
		audit(ctx, AuditEvent{Event: EventConsentDenied, Outcome: OutcomeDenied, ClientID: client.ID, Subject: user.ID,
			Attrs: []slog.Attr{slog.String("scope", strings.Join(scopes, " "))}})
		h.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	case "allow":
		if err := h.store.SaveConsent(ctx, user.ID, client.ID, scopes, h.cfg.ConsentLifespan); err != nil {
			h.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		audit(ctx, AuditEvent{Event: EventConsentGranted, Outcome: OutcomeSuccess, ClientID: client.ID, Subject: user.ID,
			Attrs: []slog.Attr{slog.String("scope", strings.Join(scopes, " "))}})
	default:
		// fosite lets a native app's loopback redirect use any port (RFC
		// 8252 7.3); any local program could then take a silent code, so
		// such a public client is always asked for (RFC 8252 8.6).
		// A confidential client's code is useless without its secret;
		// a token of the implicit flow is not.
		asked := ar.GetRequestForm().Get("redirect_uri")
		exact := asked == "" || slices.Contains(client.RedirectURIs, asked)
		secretBound := !client.Public && ar.GetResponseTypes().ExactOne("code")
		// A client identified by a URL was vetted by no operator:
		// skip_consent never applies to it.
		consented := client.SkipConsent && !client.MetadataDocument && (exact || secretBound)
		if !consented && !p.consent && (exact || secretBound) {
			if consented, err = h.store.HasConsent(ctx, user.ID, client.ID, scopes); err != nil {
				h.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err))
				return
			}
		}
		if !consented {
			if p.none {
				h.authorizeError(w, r, ar, fosite.ErrConsentRequired.WithHint("The user has not consented to this request."))
				return
			}
			h.showConsent(w, r, ar, client, user, authTime, p)
			return
		}
	}
	h.issueCode(w, r, ar, user, authTime, p, fresh)
}

// prompt is what the client asked of the login and consent steps (OpenID
// Connect Core 3.1.2.1).
type prompt struct {
	none, login, consent bool
	maxAge               time.Duration // 0: no limit
	hasMaxAge            bool
}

// applyDefaultMaxAge makes the client's default_max_age (OpenID Connect
// Registration 2) the request's max_age when it sent none: the request's
// own max_age overrides it.
func (p *prompt) applyDefaultMaxAge(client *storage.Client) {
	if !p.hasMaxAge && client.DefaultMaxAge > 0 {
		p.maxAge, p.hasMaxAge = time.Duration(client.DefaultMaxAge)*time.Second, true
	}
}

func parsePrompt(form url.Values) (prompt, error) {
	var p prompt
	for _, v := range strings.Fields(form.Get("prompt")) {
		switch v {
		case "none":
			p.none = true
		case "login", "select_account": // one account per browser: choosing one is logging in
			p.login = true
		case "consent":
			p.consent = true
		default:
			return p, fosite.ErrInvalidRequest.WithHintf("Unknown prompt value %q.", v)
		}
	}
	if p.none && (p.login || p.consent) {
		return p, fosite.ErrInvalidRequest.WithHint("prompt=none cannot be combined with other values.")
	}
	if v := form.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return p, fosite.ErrInvalidRequest.WithHint("max_age must be a non-negative number of seconds.")
		}
		p.maxAge, p.hasMaxAge = time.Duration(n)*time.Second, true
	}
	return p, nil
}

// loginSatisfies reports whether an existing login session may serve this
// request. prompt=login always asks again and max_age bounds the session's
// age. A decision on the consent page counts when the page carried a proof
// that this very login passed those checks for this client (loginProof):
// without it, re-posting a form with action=allow would skip the login.
func (h *Handler) loginSatisfies(r *http.Request, p prompt, in pageInput, clientID string, authTime time.Time) bool {
	if !p.login && !p.hasMaxAge {
		return true
	}
	if in.action == "allow" || in.action == "deny" {
		// The consent page was shown within the code's lifespan of the
		// login, and max_age still held then.
		age := h.cfg.now().Sub(authTime)
		if age > h.cfg.AuthorizeCodeLifespan && (!p.hasMaxAge || age > p.maxAge+h.cfg.AuthorizeCodeLifespan) {
			return false
		}
		for _, secret := range h.cfg.Secrets {
			if hmac.Equal([]byte(in.loginProof), []byte(loginProof(secret, r, h.csrfCookie, p, clientID, authTime))) {
				return true
			}
		}
		return false
	}
	if p.hasMaxAge && h.cfg.now().Sub(authTime) > p.maxAge {
		return false
	}
	return !p.login
}

// loginProof binds a login (by its time) to this browser, this client and
// what the request demanded of the login (prompt=login, max_age), under a
// system secret: a proof made for a request that demanded less does not
// serve one that demands more.
func loginProof(secret []byte, r *http.Request, cookieName string, p prompt, clientID string, authTime time.Time) string {
	browser := ""
	if c, err := r.Cookie(cookieName); err == nil {
		browser = c.Value
	}
	demand := "none"
	if p.login {
		demand = "login"
	}
	if p.hasMaxAge {
		demand += ",max_age=" + strconv.FormatInt(int64(p.maxAge/time.Second), 10)
	}
	return csrfMAC(secret, "login-proof:"+clientID+":"+demand+":"+strconv.FormatInt(authTime.UnixNano(), 10)+":"+browser)
}

// login checks the submitted credentials under the throttles (checkLogin).
// On success it starts a login session under a new id, ending the one the
// browser came with, and reports the user; the flow continues in this
// response. On failure it has already answered.
func (h *Handler) login(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, client *storage.Client, in pageInput) (*storage.User, time.Time, bool) {
	return h.signIn(w, r, client, in.username, in.password,
		func(message string, status int) { h.showLogin(w, r, ar, client, in.username, message, status) },
		func(err error) { h.authorizeError(w, r, ar, fosite.ErrServerError.WithWrap(err)) })
}

// signIn checks a login form's credentials under the login throttles and
// starts a login session for this browser, for whichever page asked (the
// authorize flow's, the device flow's). On failure it has answered: with
// the form again through retry, or with a server error through fail.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, client *storage.Client, username, password string,
	retry func(message string, status int), fail func(err error)) (*storage.User, time.Time, bool) {
	ctx := r.Context()
	user, err := h.checkLogin(ctx, r, username, password)
	var refused *loginRefused
	switch {
	case errors.As(err, &refused):
		h.log.Warn("login throttled", "client_id", client.ID, "addr", h.clientAddr(r).String(), "by", refused.by, "retry_after", refused.retryAfter)
		noteOutcome(r, signInThrottled)
		noteThrottled(ctx, refused.by)
		auditObserved(ctx, AuditEvent{Event: EventSignInFailure, Outcome: OutcomeFailure, ClientID: client.ID,
			Attrs: []slog.Attr{slog.String("reason", "throttled"), slog.String("throttle", refused.by)}})
		auditLockout(ctx, client.ID, refused.by, refused.retryAfter)
		setRetryAfter(w.Header(), refused.retryAfter)
		retry(refused.message(), http.StatusTooManyRequests)
		return nil, time.Time{}, false
	case errors.Is(err, storage.ErrInvalidCredentials):
		h.log.Info("login failed", "client_id", client.ID)
		noteOutcome(r, signInInvalidCredentials)
		auditSignInFailure(ctx, client.ID, err)
		retry("Incorrect username or password.", http.StatusOK)
		return nil, time.Time{}, false
	case errors.Is(err, storage.ErrBusy):
		h.log.Warn("login refused: too many password checks in progress")
		noteOutcome(r, signInBusy)
		setRetryAfter(w.Header(), busyRetryAfter)
		retry("The service is busy. Please try again in a moment.", http.StatusServiceUnavailable)
		return nil, time.Time{}, false
	case err != nil:
		noteOutcome(r, signInError)
		fail(err)
		return nil, time.Time{}, false
	}
	previous := ""
	if c, err := r.Cookie(h.sessionCookie); err == nil {
		previous = c.Value
	}
	cookie, sess, err := h.store.StartLoginSession(ctx, user.ID, h.cfg.LoginSessionLifespan, previous)
	if err != nil {
		noteOutcome(r, signInError)
		fail(err)
		return nil, time.Time{}, false
	}
	noteOutcome(r, signInSuccess)
	audit(ctx, AuditEvent{Event: EventSignInSuccess, Outcome: OutcomeSuccess, ClientID: client.ID, Subject: user.ID})
	h.setCookie(w, h.sessionCookie, cookie, sess.ExpiresAt)
	h.log.Info("login", "user_id", user.ID, "client_id", client.ID)
	return user, sess.AuthTime, true
}

// checkPKCE applies fosite's PKCE rules at the start of the flow: public
// clients must send a challenge, and only S256 (or plain, when allowed).
func (h *Handler) checkPKCE(client *storage.Client, form url.Values) error {
	challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method")
	if challenge == "" {
		if client.IsPublic() {
			return fosite.ErrInvalidRequest.WithHint("Clients must include a code_challenge when performing the authorize code flow, but it is missing.")
		}
		return nil
	}
	switch method {
	case "S256":
		return nil
	case "plain", "":
		if h.cfg.AllowPlainPKCE {
			return nil
		}
		return fosite.ErrInvalidRequest.WithHint("Clients must use code_challenge_method=S256, plain is not allowed.")
	default:
		return fosite.ErrInvalidRequest.WithHintf("The code_challenge_method %q is not supported; use S256.", method)
	}
}

// currentUser returns the signed-in user of this browser, or nil.
func (h *Handler) currentUser(ctx context.Context, r *http.Request) (*storage.User, time.Time, error) {
	c, err := r.Cookie(h.sessionCookie)
	if err != nil || c.Value == "" {
		return nil, time.Time{}, nil
	}
	u, sess, err := h.store.SessionUser(ctx, c.Value)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	return u, sess.AuthTime, nil
}

func (h *Handler) issueCode(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, user *storage.User, authTime time.Time, p prompt, fresh bool) {
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	// fosite's OpenID Connect checks compare auth_time with the request's
	// time: prompt=login wants a login no older than the request, which is
	// what loginSatisfies has made sure of.
	requestedAt := h.cfg.now().UTC()
	if p.login || p.hasMaxAge || fresh {
		requestedAt = authTime.UTC()
	}
	// The code, its PKCE challenge and its OpenID Connect session are
	// written together or not at all: a code without its challenge would be
	// redeemable without the verifier. (InTx reruns the transaction should
	// it lose a serialization race.)
	var resp fosite.AuthorizeResponder
	// A pushed request is spent with its code: one push, one code.
	err := h.store.InTx(r.Context(), func(ctx context.Context) (err error) {
		if p := pushedOf(r); p != nil {
			if err := h.store.ConsumePAR(ctx, p.requestURI, p.browser); errors.Is(err, storage.ErrNotFound) {
				return errPushedSpent
			} else if err != nil {
				return fosite.ErrServerError.WithWrap(err)
			}
		}
		resp, err = h.provider.NewAuthorizeResponse(ctx, ar, h.newSession(ar.GetClient(), user, authTime, requestedAt, ar.GetGrantedScopes()))
		return err
	})
	if errors.Is(err, errPushedSpent) {
		h.authorizeError(w, r, nil, errUnknownPushed())
		return
	}
	if err != nil {
		h.authorizeError(w, r, ar, err)
		return
	}
	h.provider.WriteAuthorizeResponse(r.Context(), w, ar, resp)
}

// newSession is what the code carries to the token endpoint: the subject,
// and the ID token's claims with the profile and email claims the granted
// scopes allow (OpenID Connect Core 5.4). Subject is the user's id; the
// claims' sub is the one client sees (pairwise.go), which fosite compares
// an id_token_hint with.
func (h *Handler) newSession(client fosite.Client, user *storage.User, authTime, requestedAt time.Time, scopes fosite.Arguments) *openid.DefaultSession {
	return &openid.DefaultSession{
		Subject:  user.ID,
		Username: user.Username,
		Claims: &jwt.IDTokenClaims{
			Subject:                         h.subjects.of(client, user.ID),
			Issuer:                          h.cfg.Issuer,
			AuthTime:                        authTime.UTC().Truncate(time.Second),
			RequestedAt:                     requestedAt.Truncate(time.Second),
			AuthenticationMethodsReferences: []string{"pwd"},
			Extra:                           userClaims(user, scopes),
		},
		Headers: &jwt.Headers{},
	}
}

// userClaims are the standard claims of user that scopes release.
func userClaims(user *storage.User, scopes fosite.Arguments) map[string]any {
	claims := map[string]any{}
	if scopes.Has("profile") {
		claims["preferred_username"] = user.Username
		if user.Name != "" {
			claims["name"] = user.Name
		}
	}
	if scopes.Has("email") && user.Email != "" {
		claims["email"] = user.Email
		claims["email_verified"] = user.EmailVerified
	}
	return claims
}

func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, client *storage.Client, username, message string, status int) {
	h.pages.renderLogin(w, status, loginPage{
		Action:     h.base + "/oauth2/authorize",
		CSRFToken:  h.csrfToken(w, r),
		Hidden:     carriedFields(r, ar),
		ClientName: clientName(client),
		Username:   username,
		Error:      message,
	})
}

func (h *Handler) showConsent(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, client *storage.Client, user *storage.User, authTime time.Time, p prompt) {
	redirect := ar.GetRedirectURI()
	host := redirect.Host
	if host == "" {
		host = redirect.Scheme + ":"
	}
	scopes, err := h.consentScopes(r.Context(), ar.GetRequestedScopes())
	if err != nil {
		h.scopesFailed(w, r, err)
		return
	}
	csrf := h.csrfToken(w, r)
	hidden := append(carriedFields(r, ar), hiddenField{Name: "login_proof", Value: loginProof(h.cfg.Secrets[0], r, h.csrfCookie, p, client.ID, authTime)})
	h.pages.renderConsent(w, http.StatusOK, consentPage{
		Action:       h.base + "/oauth2/authorize",
		CSRFToken:    csrf,
		Hidden:       hidden,
		ClientName:   clientName(client),
		ClientURI:    client.ClientURI,
		LogoURI:      client.LogoURI,
		TOSURI:       client.TOSURI,
		PolicyURI:    client.PolicyURI,
		RedirectHost: host,
		Username:     user.Username,
		Scopes:       scopes,
		IdentifiedBy: identifiedBy(client),
	})
}

// authorizeError answers a failed authorize request. While the client and
// its redirect_uri are not both validated, the error is shown on our own
// page and never redirected to; afterwards it goes back to the client.
// A refusal is logged at info with its precise reason and the request id,
// so an operator can tell a developer what went wrong; dev mode shows the
// reason on the page too.
func (h *Handler) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	ctx := r.Context()
	rfc := fosite.ErrorToRFC6749Error(err)
	reason := authorizeReason(r.Form, ar, err)
	if rfc.CodeField >= 500 {
		failed(ctx, err)
	} else {
		h.log.Info("authorize request refused", "request_id", requestID(ctx), "client_id", clip(r.Form.Get("client_id")),
			"error", rfc.ErrorField, "reason", reason)
	}
	if ar == nil || !ar.IsRedirectURIValid() {
		h.renderAuthorizeError(w, r, rfc, reason)
		return
	}
	h.provider.WriteAuthorizeError(ctx, w, ar, err)
}

// renderAuthorizeError shows a refused browser request on our error page:
// plain words for the person, the request id for support, and in dev mode
// reason, for the developer.
func (h *Handler) renderAuthorizeError(w http.ResponseWriter, r *http.Request, rfc *fosite.RFC6749Error, reason string) {
	// The page answers a browser, not a client: a bad request is a 400
	// even where fosite's error says 401 (an unknown client).
	status := http.StatusBadRequest
	if rfc.CodeField >= 500 {
		status = rfc.CodeField
	}
	// Our own words for the person in front of the page: fosite's texts
	// are for developers, and its hints can echo what the request said.
	msg, ok := errorPageMessages[rfc.ErrorField]
	if !ok {
		msg = "The app sent a sign-in request this server cannot accept."
	}
	if status >= 500 {
		msg = "The server hit an unexpected problem. Please try again later."
	}
	h.pages.renderError(w, status, errorPage{
		Title:     "This request can't be completed",
		Message:   msg,
		Code:      rfc.ErrorField,
		Reason:    h.devReason(reason),
		RequestID: requestID(r.Context()),
	})
}

// devReason is reason where pages may show it (dev mode, or debug), else
// "": a production page must not say what a crafted link makes it say.
func (h *Handler) devReason(reason string) string {
	if h.cfg.Dev || h.cfg.Debug {
		return reason
	}
	return ""
}

// csrfReason explains a refused form to the developer.
const csrfReason = "The form's csrf_token does not match this browser's CSRF cookie: the cookie is missing " +
	"(blocked, expired, or the form was posted from another site) or belongs to another form."

// authorizeReason is the precise reason an authorize request was refused,
// in a developer's terms: which redirect_uri is not registered and which
// are, which client_id is unknown, else fosite's hint.
func authorizeReason(form url.Values, ar fosite.AuthorizeRequester, err error) string {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		return describeError(err).Error()
	}
	var client fosite.Client // fosite's request starts with an empty one
	if ar != nil && ar.GetClient() != nil && ar.GetClient().GetID() != "" {
		client = ar.GetClient()
	}
	switch {
	case client == nil && errors.Is(err, fosite.ErrInvalidClient):
		id := form.Get("client_id")
		if id == "" {
			return "The request has no client_id."
		}
		if errors.Is(err, fosite.ErrNotFound) {
			return fmt.Sprintf("client_id %q is not registered with this server.", clip(id))
		}
	case client != nil && errors.Is(err, fosite.ErrInvalidRequest) && strings.Contains(strings.ToLower(rfc.HintField), "redirect"):
		if reason := redirectReason(client, form.Get("redirect_uri")); reason != "" {
			return reason
		}
	}
	if rfc.HintField != "" {
		return rfc.HintField
	}
	return rfc.DescriptionField
}

// redirectReason says how asked fails to match client's registered
// redirect URIs, or "" when it matches (the problem is elsewhere).
func redirectReason(client fosite.Client, asked string) string {
	registered := client.GetRedirectURIs()
	list := strings.Join(registered, ", ")
	if len(registered) == 0 {
		list = "none"
	}
	switch {
	case asked == "" && len(registered) == 1:
		return fmt.Sprintf("The request has no redirect_uri, which OpenID Connect (scope openid) requires; registered for client %s: %s", client.GetID(), list)
	case asked == "":
		return fmt.Sprintf("The request has no redirect_uri, and client %s has %d registered, so it must name one; registered: %s", client.GetID(), len(registered), list)
	}
	if _, err := fosite.MatchRedirectURIWithClientRedirectURIs(asked, client); err == nil {
		return ""
	}
	return fmt.Sprintf("redirect_uri %s is not registered for client %s; registered: %s", clip(asked), client.GetID(), list)
}

// clip shortens what a request said to a length fit for a log line or a
// page.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// errorPageMessages explain, in plain language, why a sign-in request that
// cannot go back to its app stopped here.
var errorPageMessages = map[string]string{
	"invalid_client":             "The app that sent you here is not registered with this sign-in service, or its link is out of date.",
	"invalid_request":            "The sign-in link is incomplete or malformed. Go back to the app and start again.",
	"unauthorized_client":        "The app that sent you here is not allowed to sign people in this way.",
	"unsupported_response_type":  "The app asked for a kind of sign-in this server does not offer.",
	"unsupported_response_mode":  "The app asked for its answer in a way this server does not offer.",
	"invalid_scope":              "The app asked for permissions it is not registered for.",
	"request_not_supported":      "The app sent its request in a form this server does not accept.",
	"request_uri_not_supported":  "The app sent its request in a form this server does not accept.",
	"registration_not_supported": "The app sent its request in a form this server does not accept.",
}

// allowFormRedirect lets the consent form's 303 go to the client: browsers
// apply the CSP form-action directive to redirects after a form post too.
func (h *Handler) allowFormRedirect(w http.ResponseWriter, redirect *url.URL) {
	if redirect == nil {
		return
	}
	src := redirect.Scheme + ":"
	if redirect.Host != "" {
		src = redirect.Scheme + "://" + redirect.Host
	}
	if strings.ContainsAny(src, " ;,'") {
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self' "+src+"; frame-ancestors 'none'; base-uri 'none'")
}

// CSRF protection for our forms: a random value in an HttpOnly cookie and,
// in the form, an HMAC of it under the system secret. A forged form lacks
// the cookie's HMAC; a cookie planted by a sibling domain lacks ours.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	value := ""
	if c, err := r.Cookie(h.csrfCookie); err == nil && len(c.Value) >= 32 {
		value = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		value = base64.RawURLEncoding.EncodeToString(b)
		h.setCookie(w, h.csrfCookie, value, time.Time{})
	}
	return csrfMAC(h.cfg.Secrets[0], value)
}

func (h *Handler) csrfValid(r *http.Request, token string) bool {
	c, err := r.Cookie(h.csrfCookie)
	if err != nil || c.Value == "" || token == "" {
		return false
	}
	for _, s := range h.cfg.Secrets {
		if hmac.Equal([]byte(csrfMAC(s, c.Value)), []byte(token)) {
			return true
		}
	}
	return false
}

func csrfMAC(secret []byte, value string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("csrf:" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// setCookie sets an HttpOnly, SameSite=Lax cookie, Secure when the issuer is
// https. A zero expiry makes it a browser-session cookie.
func (h *Handler) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     h.base + "/",
		HttpOnly: true,
		Secure:   h.cfg.secureCookies(),
		SameSite: http.SameSiteLaxMode,
	}
	if !expires.IsZero() {
		c.Expires = expires
		c.MaxAge = int(expires.Sub(h.cfg.now()).Seconds())
	}
	http.SetCookie(w, c)
}

func (h *Handler) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: h.base + "/", MaxAge: -1,
		HttpOnly: true, Secure: h.cfg.secureCookies(), SameSite: http.SameSiteLaxMode})
}

// standInState is the state fosite sees for a PKCE request that has none.
// It is random per process so no client can send it by chance.
var standInState = func() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "authz-no-state-" + base64.RawURLEncoding.EncodeToString(b)
}()

// clientRedirectWriter edits the redirect to the client's redirect_uri,
// whether fosite writes it for a code or an error: it adds the issuer
// (RFC 9207, so a client can tell which server answered) and removes the
// stand-in state.
type clientRedirectWriter struct {
	http.ResponseWriter
	redirect  *url.URL // the validated redirect_uri; nil until known
	iss       string
	dropState bool
}

func (w *clientRedirectWriter) WriteHeader(code int) {
	if loc := w.Header().Get("Location"); loc != "" && w.redirect != nil && code >= 300 && code < 400 {
		if u, err := url.Parse(loc); err == nil && u.Scheme == w.redirect.Scheme && u.Host == w.redirect.Host && u.Path == w.redirect.Path {
			// The implicit flow answers in the fragment; iss goes
			// with the rest of the answer.
			if u.Fragment != "" {
				if f, err := url.ParseQuery(u.EscapedFragment()); err == nil {
					f.Set("iss", w.iss)
					u.Fragment, u.RawFragment = "", ""
					w.Header().Set("Location", u.String()+"#"+f.Encode())
				}
			} else {
				q := u.Query()
				if w.dropState && q.Get("state") == standInState {
					q.Del("state")
				}
				q.Set("iss", w.iss)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *clientRedirectWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clientParams are the authorize parameters as the client sent them.
func clientParams(ar fosite.AuthorizeRequester) url.Values {
	form := ar.GetRequestForm()
	if form.Get("state") != standInState {
		return form
	}
	out := url.Values{}
	for k, v := range form {
		if k != "state" {
			out[k] = v
		}
	}
	return out
}

// hiddenFields carries the authorize parameters through a page, in a
// stable order.
func hiddenFields(form url.Values) []hiddenField {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []hiddenField
	for _, k := range keys {
		for _, v := range form[k] {
			out = append(out, hiddenField{Name: k, Value: v})
		}
	}
	return out
}

func clientName(c *storage.Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}
