package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
)

// token serves POST /oauth2/token. The whole exchange runs in one
// transaction carried in the context; fosite's own transactions inside it
// become savepoints.
//
// The transaction is committed even when the request fails: what fosite
// writes on a failure path must persist (revoking every token of a reused
// code or refresh token, spending a PKCE challenge), and its own failed
// steps have already been rolled back to their savepoints.
func (h *Handler) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	start := h.cfg.now()
	// The body is read before a database connection is taken, so a client
	// that sends it slowly holds nothing but its own socket.
	if err := r.ParseMultipartForm(maxFormBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		h.writeAccessError(r.Context(), w, nil, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	if dup := duplicateParameter(r.PostForm); dup != "" {
		h.writeAccessError(r.Context(), w, nil, errDuplicate(dup))
		return
	}
	if err := h.prefetchClientKeys(r.Context(), r.PostForm); err != nil {
		h.writeAccessError(r.Context(), w, nil, err)
		return
	}
	var (
		ar   fosite.AccessRequester
		resp fosite.AccessResponder
	)
	run := h.transact
	if r.PostForm.Get("grant_type") == "client_credentials" && !r.PostForm.Has("client_assertion") {
		// client_credentials with a client secret reads nothing (the
		// client is cached) and writes one row, the new token: a single
		// statement, atomic by itself and bounded by the request's
		// deadline at its commit too (storage's deferWrite), with no
		// BEGIN or COMMIT around it (1 statement instead of 3; about
		// 40 % more of them a second). Should its answer be lost, the
		// row it may have written holds a token nobody was given. With
		// private_key_jwt the assertion's jti is written too, and the
		// two must commit or fail together: a jti spent by a failed
		// request would make the client's retry look like a replay.
		run = alone
	}
	err := run(storage.WithRefreshReuse(r.Context(), start, h.cfg.RefreshReuseWindow), func(ctx context.Context) (err error) {
		if err := h.prefetchGrant(ctx, r.PostForm); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		ar, resp, err = h.exchange(ctx, r)
		return err
	})
	if err != nil {
		h.writeAccessError(r.Context(), w, ar, err)
		return
	}
	noteOutcome(r, issuedOutcome(ar.GetGrantTypes()))
	auditIssued(r.Context(), ar)
	h.provider.WriteAccessResponse(r.Context(), w, ar, resp)
}

// prefetchGrant reads at once what fosite's handlers will ask for one by
// one during a code exchange: the code, its PKCE request and its OpenID
// Connect session, one statement for three (or, with fosite reading the
// code twice, five).
func (h *Handler) prefetchGrant(ctx context.Context, form url.Values) error {
	code := form.Get("code")
	if form.Get("grant_type") != "authorization_code" || code == "" {
		return nil
	}
	return h.store.PrefetchCode(ctx, h.strategy.AuthorizeCodeSignature(ctx, code), code)
}

// alone runs fn with no transaction around it: each statement commits
// by itself.
func alone(ctx context.Context, fn func(ctx context.Context) error) error {
	return fn(ctx)
}

// transact runs one request's unit of work in a transaction and commits
// it whatever fn returned: what fosite writes on a failure path must
// persist too (see token). A unit that lost a serialization race or
// deadlocked (storage.Retryable) runs again, whole, at READ COMMITTED
// (storage.Rerun), up to storage.MaxAttempts times; after that its
// failure is an outage, a 503.
func (h *Handler) transact(ctx context.Context, fn func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		tctx, err := h.store.BeginTX(ctx)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		err = fn(tctx)
		if cerr := h.store.Commit(tctx); cerr != nil {
			_ = h.store.Rollback(tctx)
			// What a failure path wrote (a family revoked after a reuse)
			// is sent with the COMMIT: if that failed, the client's error
			// is not the whole truth.
			if err == nil || fosite.ErrorToRFC6749Error(err).CodeField < 500 {
				err = fosite.ErrServerError.WithWrap(cerr)
			}
		}
		if !storage.RunAgain(ctx, attempt, storage.RetryableFault(ctx)) {
			return err
		}
		storage.ResetFault(ctx)
		ctx = storage.Rerun(ctx)
	}
}

func (h *Handler) exchange(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error) {
	ar, err := h.provider.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		if gt := r.PostForm.Get("grant_type"); gt != "" && !slices.Contains(tokenGrantTypes, gt) {
			return ar, nil, fosite.ErrUnsupportedGrantType.WithHintf("The grant type %q is not supported.", gt)
		}
		if errors.Is(err, storage.ErrConcurrentRefresh) {
			auditRefreshReuse(ctx, ar, false)
			return ar, nil, concurrentRefresh(err)
		}
		if errors.Is(err, fosite.ErrInactiveToken) && ar != nil && ar.GetGrantTypes().ExactOne("refresh_token") {
			auditRefreshReuse(ctx, ar, true) // fosite revoked the family
		}
		return ar, nil, h.spendCode(ctx, ar, err)
	}
	resp, err := h.provider.NewAccessResponse(ctx, ar)
	if errors.Is(err, storage.ErrConcurrentRefresh) {
		auditRefreshReuse(ctx, ar, false)
		return ar, nil, concurrentRefresh(err)
	}
	if err != nil && !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return ar, nil, h.spendCode(ctx, ar, err)
	}
	if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		// Another exchange of this code won the race. This one is a second
		// use of the code: deny it and revoke what the first use issued
		// (RFC 6749 4.1.2), as fosite does for a later reuse.
		if rerr := h.store.RevokeAccessToken(ctx, ar.GetID()); rerr != nil {
			return ar, nil, fosite.ErrServerError.WithWrap(rerr)
		}
		if rerr := h.store.RevokeRefreshToken(ctx, ar.GetID()); rerr != nil {
			return ar, nil, fosite.ErrServerError.WithWrap(rerr)
		}
		auditCodeReuse(ctx, ar.GetClient().GetID(), ar.GetSession())
		return ar, nil, fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.")
	}
	return ar, resp, err
}

// concurrentRefresh answers a refresh token that another request rotated
// moments ago, within AUTHZ_REFRESH_REUSE_WINDOW or while this request was
// under way: the grant is no longer valid (RFC 6749 5.2), but the family is
// spared, since two tabs of one app refreshing at once look just like this.
func concurrentRefresh(err error) error {
	return fosite.ErrInvalidGrant.WithWrap(err).WithHint("The refresh token was already rotated by another request moments ago; use the refresh token that request received.")
}

// spendCode makes a failed code exchange by the code's own client use the
// code up. fosite spends a code's PKCE challenge on the first try, right or
// wrong; the code itself must not outlive it, or a confidential client could
// redeem it without any verifier at the second try. It returns cause, or a
// server error when the code could not be spent.
func (h *Handler) spendCode(ctx context.Context, ar fosite.AccessRequester, cause error) error {
	if ar == nil || ar.GetClient() == nil || !ar.GetGrantTypes().ExactOne("authorization_code") {
		return cause
	}
	// A server failure is not the client's doing: it may retry the code.
	if fosite.ErrorToRFC6749Error(cause).CodeField >= 500 {
		return cause
	}
	code := ar.GetRequestForm().Get("code")
	if code == "" {
		return cause
	}
	sig := h.strategy.AuthorizeCodeSignature(ctx, code)
	stored, err := h.store.GetAuthorizeCodeSession(ctx, sig, openid.NewDefaultSession())
	if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) && stored != nil && stored.GetClient().GetID() == ar.GetClient().GetID() {
		// A second use of the code: fosite revoked what the first issued.
		auditCodeReuse(ctx, ar.GetClient().GetID(), stored.GetSession())
	}
	if err != nil || stored.GetClient().GetID() != ar.GetClient().GetID() {
		// Unknown, already used, or another client's code: nothing to spend,
		// and no client may spend a code that is not its own.
		return cause
	}
	if err := h.store.InvalidateAuthorizeCodeSession(ctx, sig); err != nil && !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return fosite.ErrServerError.WithWrap(err)
	}
	return cause
}

// writeAccessError writes an RFC 6749 5.2 error whose description says
// what is wrong (explainTokenError, tokenerrors.go). A 401 carries the
// WWW-Authenticate challenge RFC 6749 asks for.
func (h *Handler) writeAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		failed(ctx, err)
	} else {
		err = h.explainTokenError(ctx, ar, err)
		h.log.Debug("token request rejected", "request_id", requestID(ctx), "error", rfc.ErrorField,
			"description", fosite.ErrorToRFC6749Error(err).DescriptionField)
	}
	if rfc.CodeField == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="authz", error="invalid_client"`)
	}
	setRetryAfterFor(w.Header(), err)
	h.provider.WriteAccessError(ctx, w, ar, err)
}

// setRetryAfterFor sets Retry-After on the answer to err when a throttle
// refused the request or the server is overloaded.
func setRetryAfterFor(hd http.Header, err error) {
	if d, ok := retryAfterOf(err); ok {
		setRetryAfter(hd, d)
	} else if fosite.ErrorToRFC6749Error(err).CodeField == http.StatusServiceUnavailable {
		hd.Set("Retry-After", retryAfterSeconds)
	}
}

// introspect serves POST /oauth2/introspect (RFC 7662). Only an
// authenticated confidential client may ask; a bearer token is not accepted
// as authentication. Unknown, expired, revoked and rotated tokens are all
// exactly {"active":false}.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.writeAccessError(ctx, w, nil, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	noteOutcome(r, introspectionRefused) // until it is answered
	client, err := h.provider.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		if fosite.ErrorToRFC6749Error(err).CodeField < 500 {
			err = fosite.ErrInvalidClient.WithWrap(err).WithHint("Introspection requires client authentication.")
		} else {
			noteOutcome(r, introspectionError)
		}
		h.writeAccessError(ctx, w, nil, err)
		return
	}
	if client.IsPublic() {
		h.writeAccessError(ctx, w, nil, fosite.ErrInvalidClient.WithHint("A public client cannot introspect tokens."))
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		h.writeAccessError(ctx, w, nil, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is missing."))
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.forged(ctx, token) {
		// Not a token of ours: no lookup needed to say so.
		noteOutcome(r, introspectionInactive)
		_, _ = w.Write([]byte(`{"active":false}`))
		return
	}
	ctx = storage.WithReads(ctx)
	// The hint is what RFC 7662 2.1 made it for: a resource server that
	// says access_token spares PostgreSQL setting up the refresh table's
	// scan. Were the hint wrong, fosite's path reads that table next.
	hint := fosite.TokenUse(r.PostForm.Get("token_type_hint"))
	view, err := h.store.LookupForIntrospection(ctx, h.strategy.AccessTokenSignature(ctx, token), h.strategy.RefreshTokenSignature(ctx, token), hint == fosite.AccessToken)
	if err != nil {
		noteOutcome(r, introspectionError)
		h.writeAccessError(ctx, w, nil, fosite.ErrServerError.WithWrap(err))
		return
	}
	if view != nil {
		h.introspectAccessToken(w, r, view)
		return
	}
	use, ar, err := h.provider.IntrospectToken(ctx, token, hint, openid.NewDefaultSession())
	if err != nil {
		if rfc := fosite.ErrorToRFC6749Error(err); rfc.CodeField >= 500 && !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrNotFound) {
			// Not {"active":false}: the token may well be active.
			noteOutcome(r, introspectionError)
			h.writeAccessError(ctx, w, nil, err)
			return
		}
		noteOutcome(r, introspectionInactive)
		_, _ = w.Write([]byte(`{"active":false}`))
		return
	}
	// A refresh token is active only to the client it was issued to. A
	// resource server has no business with one, and one that checks only
	// active and scope would otherwise take it for a bearer token.
	if use == fosite.RefreshToken && ar.GetClient().GetID() != client.GetID() {
		noteOutcome(r, introspectionInactive)
		_, _ = w.Write([]byte(`{"active":false}`))
		return
	}
	noteOutcome(r, introspectionActive)
	sess := ar.GetSession()
	kind := fosite.AccessToken
	if use == fosite.RefreshToken {
		kind = fosite.RefreshToken
	}
	h.writeIntrospection(w, introspection{
		client:      ar.GetClient(),
		use:         use,
		requestedAt: ar.GetRequestedAt(),
		expiresAt:   sess.GetExpiresAt(kind),
		subject:     sess.GetSubject(),
		username:    sess.GetUsername(),
		scopes:      ar.GetGrantedScopes(),
		audience:    ar.GetGrantedAudience(),
	})
}

// introspectAccessToken answers for an access token read as a view
// (storage.LookupForIntrospection), checking what fosite's core validator
// would: the row is active and the token has not expired. Its HMAC or JWS
// was verified before the lookup (forged). The stored session is not
// read: its expiry, subject and username come with the view.
func (h *Handler) introspectAccessToken(w http.ResponseWriter, r *http.Request, v *storage.AccessTokenView) {
	exp := v.ExpiresAt
	deadline := exp
	if deadline.IsZero() {
		deadline = v.RequestedAt.Add(h.cfg.AccessTokenLifespan)
	}
	if !v.Active || deadline.Before(h.cfg.now()) {
		noteOutcome(r, introspectionInactive)
		_, _ = w.Write([]byte(`{"active":false}`))
		return
	}
	noteOutcome(r, introspectionActive)
	h.writeIntrospection(w, introspection{
		client:      v.Client,
		use:         fosite.AccessToken,
		requestedAt: v.RequestedAt,
		expiresAt:   exp,
		subject:     v.Subject,
		username:    v.Username,
		scopes:      v.GrantedScopes,
		audience:    v.GrantedAudience,
	})
}

// introspection is what an active token's answer says (RFC 7662 2.2).
type introspection struct {
	client            fosite.Client
	use               fosite.TokenUse
	requestedAt       time.Time
	expiresAt         time.Time
	subject, username string
	scopes, audience  []string
}

// introspectionAnswer is the JSON of an active token's answer.
type introspectionAnswer struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss"`
	TokenUse  string   `json:"token_use"`
}

// writeIntrospection writes an active token's answer. Its sub is the one
// the token's client sees (pairwise.go), and a pairwise client's tokens
// carry no username.
func (h *Handler) writeIntrospection(w http.ResponseWriter, in introspection) {
	out := introspectionAnswer{
		Active:   true,
		Scope:    strings.Join(in.scopes, " "),
		ClientID: in.client.GetID(),
		Iat:      in.requestedAt.Unix(),
		Aud:      in.audience,
		Iss:      h.cfg.Issuer,
		TokenUse: string(in.use),
	}
	if in.subject != "" {
		out.Sub = h.subjects.of(in.client, in.subject)
	}
	// A username is the same for every client: told about a pairwise
	// client's token, it would join what the pairwise sub keeps apart.
	if !isPairwise(in.client) {
		out.Username = in.username
	}
	if in.use == fosite.AccessToken {
		out.TokenType = "Bearer"
	}
	if !in.expiresAt.IsZero() {
		out.Exp = in.expiresAt.Unix()
	}
	b, err := json.Marshal(out)
	if err != nil {
		return
	}
	_, _ = w.Write(append(b, '\n'))
}

// forged reports whether token cannot be one this server issued: its HMAC
// does not verify under any of our secrets, or it is not shaped like our
// tokens at all.
func (h *Handler) forged(ctx context.Context, token string) bool {
	at, ok := h.strategy.(*accessTokens)
	if !ok {
		return false
	}
	if isJWT(token) {
		return at.forgedJWT(ctx, token)
	}
	s, ok := at.CoreStrategy.(*oauth2.HMACSHAStrategyUnPrefixed)
	if !ok {
		return false
	}
	err := s.Enigma.Validate(ctx, token)
	var corrupt base64.CorruptInputError
	return errors.Is(err, fosite.ErrTokenSignatureMismatch) || errors.Is(err, fosite.ErrInvalidTokenFormat) || errors.As(err, &corrupt)
}

// revoke serves POST /oauth2/revoke (RFC 7009). Revoking a refresh token
// revokes the access tokens of its grant too; an unknown token is 200.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseMultipartForm(maxFormBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		h.provider.WriteRevocationResponse(r.Context(), w, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	if err := h.prefetchClientKeys(r.Context(), r.PostForm); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="authz", error="invalid_client"`)
		h.provider.WriteRevocationResponse(r.Context(), w, err)
		return
	}
	err := h.transact(r.Context(), func(ctx context.Context) error {
		return h.provider.NewRevocationRequest(ctx, r)
	})
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.CodeField >= 500 {
			// fosite answers every error but invalid_request and
			// invalid_client with 200: a revocation that did not happen
			// must not claim success (RFC 7009 2.2.1).
			h.writeAccessError(r.Context(), w, nil, err)
			return
		}
		if rfc.CodeField == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="authz", error="invalid_client"`)
		}
		setRetryAfterFor(w.Header(), err)
	} else {
		auditRevoked(r)
	}
	h.provider.WriteRevocationResponse(r.Context(), w, err)
}
