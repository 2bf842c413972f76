package authz

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// The device authorization grant (RFC 8628) at the token endpoint. fosite
// v0.49 has no handler for it; deviceGrant is one, composed like fosite's
// own (provider.go), so the token endpoint's transaction, client
// authentication and error writing apply to it unchanged.

// deviceCodeGrant is the grant type of RFC 8628 3.4.
const deviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"

// devicePollStep is how much slower a device that polled too fast must
// poll from then on (RFC 8628 3.5, slow_down).
const devicePollStep = 5 * time.Second

// RFC 8628 3.5's token endpoint errors. All are 400s, access_denied too
// (fosite's is the authorization endpoint's 403).
var (
	errAuthorizationPending = deviceError("authorization_pending", "The authorization request is still pending: the user has not yet approved or denied it.")
	errSlowDown             = deviceError("slow_down", "The authorization request is still pending, and the device polls too fast.")
	errExpiredToken         = deviceError("expired_token", "The device code has expired.")
	errDeviceAccessDenied   = deviceError("access_denied", "The user denied the authorization request.")
)

func deviceError(code, description string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: code, DescriptionField: description, CodeField: http.StatusBadRequest}
}

// deviceCodeSignature is what device_codes stores of a device code. The
// code is 256 random bits, so a plain hash cannot be reversed, and it
// survives a rotation of the system secrets.
func deviceCodeSignature(code string) string {
	sum := sha256.Sum256([]byte(code))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// deviceGrantStore is what the grant needs of storage.
type deviceGrantStore interface {
	fosite.Storage
	BeginTX(ctx context.Context) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
	CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error
	CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error
	DeviceCodeForUpdate(ctx context.Context, signature string) (*storage.DeviceCode, error)
	NoteDevicePoll(ctx context.Context, signature string, interval time.Duration) error
	RedeemDeviceCode(ctx context.Context, signature, requestID string) error
	User(ctx context.Context, id string) (*storage.User, error)
}

// deviceGrant is the token endpoint handler of the device code grant.
type deviceGrant struct {
	cfg      *Config
	config   *fositeConfig
	store    deviceGrantStore
	strategy *strategy
}

var _ fosite.TokenEndpointHandler = (*deviceGrant)(nil)

// deviceGrantFactory makes the handler in provider.go's list of factories.
func deviceGrantFactory(cfg *Config) compose.Factory {
	return func(config fosite.Configurator, st any, s any) any {
		return &deviceGrant{cfg: cfg, config: config.(*fositeConfig), store: st.(deviceGrantStore), strategy: s.(*strategy)}
	}
}

func (g *deviceGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (g *deviceGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(deviceCodeGrant)
}

// HandleTokenEndpointRequest looks the device code up, locked for the
// rest of the token endpoint's transaction, and answers a poll that is
// not yet (or no longer) redeemable. An approved code's grant goes on r.
func (g *deviceGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	client := r.GetClient()
	if !client.GetGrantTypes().Has(deviceCodeGrant) {
		return fosite.ErrUnauthorizedClient.WithHintf("The client is not registered for the grant type %s.", deviceCodeGrant)
	}
	code := r.GetRequestForm().Get("device_code")
	if code == "" {
		return fosite.ErrInvalidRequest.WithHint("The device_code parameter is missing.")
	}
	sig := deviceCodeSignature(code)
	d, err := g.store.DeviceCodeForUpdate(ctx, sig)
	if errors.Is(err, storage.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The device code is not one this server issued, or it expired and was deleted.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if d.ClientID != client.GetID() {
		return fosite.ErrInvalidGrant.WithHint("The device code was issued to another client.")
	}
	now := g.cfg.now()
	if !now.Before(d.ExpiresAt) {
		return errExpiredToken.WithHint("The device code has expired: start a new device authorization request.")
	}
	switch d.Status {
	case storage.DevicePending:
		return g.pending(ctx, d, now)
	case storage.DeviceDenied:
		return errDeviceAccessDenied.WithHint("The user denied the authorization request.")
	case storage.DeviceRedeemed:
		return fosite.ErrInvalidGrant.WithHint("The device code was already exchanged for tokens; a device code is single-use.")
	case storage.DeviceApproved:
		return g.grant(ctx, r, d, now)
	}
	return fosite.ErrServerError.WithDebugf("device code in unknown status %q", d.Status)
}

// pending answers a poll of a request the person has not decided yet:
// slow_down, with a longer interval from then on, when it came sooner
// than the interval after the previous poll; authorization_pending
// otherwise. The token endpoint commits the poll's time either way.
func (g *deviceGrant) pending(ctx context.Context, d *storage.DeviceCode, now time.Time) error {
	interval := time.Duration(d.IntervalSeconds) * time.Second
	tooSoon := d.LastPolledAt != nil && now.Sub(*d.LastPolledAt) < interval
	if tooSoon {
		interval += devicePollStep
	}
	if err := g.store.NoteDevicePoll(ctx, d.Signature, interval); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if tooSoon {
		return errSlowDown.WithHintf("Poll at most every %d seconds.", int(interval/time.Second))
	}
	return errAuthorizationPending.WithHint("The user has not yet approved or denied the request; keep polling at the interval given.")
}

// grant puts what the person approved on r: the session of the person
// who approved, and the scopes and resources the device asked for.
func (g *deviceGrant) grant(ctx context.Context, r fosite.AccessRequester, d *storage.DeviceCode, now time.Time) error {
	if d.Subject == nil || d.AuthTime == nil {
		return fosite.ErrServerError.WithDebug("approved device code without a subject")
	}
	user, err := g.store.User(ctx, *d.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The user who approved the request no longer exists.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	r.SetRequestedScopes(d.RequestedScopes)
	r.SetRequestedAudience(d.RequestedAudience)
	for _, s := range d.RequestedScopes {
		r.GrantScope(s)
	}
	for _, a := range d.RequestedAudience {
		r.GrantAudience(a)
	}
	sess := deviceSession(g.cfg.Issuer, user, *d.AuthTime, d.CreatedAt, r.GetGrantedScopes())
	client := r.GetClient()
	at := fosite.GetEffectiveLifespan(client, fosite.GrantType(deviceCodeGrant), fosite.AccessToken, g.config.GetAccessTokenLifespan(ctx))
	sess.SetExpiresAt(fosite.AccessToken, now.UTC().Add(at).Round(time.Second))
	if rt := fosite.GetEffectiveLifespan(client, fosite.GrantType(deviceCodeGrant), fosite.RefreshToken, g.config.GetRefreshTokenLifespan(ctx)); rt > -1 {
		sess.SetExpiresAt(fosite.RefreshToken, now.UTC().Add(rt).Round(time.Second))
	}
	r.SetSession(sess)
	return nil
}

// deviceSession is the session an approved device request's tokens carry,
// as the code flow's (Handler.newSession): the subject, and ID token
// claims with what the granted scopes release. There is no nonce.
func deviceSession(issuer string, user *storage.User, authTime, requestedAt time.Time, scopes fosite.Arguments) *openid.DefaultSession {
	return &openid.DefaultSession{
		Subject:  user.ID,
		Username: user.Username,
		Claims: &jwt.IDTokenClaims{
			Subject:                         user.ID,
			Issuer:                          issuer,
			AuthTime:                        authTime.UTC().Truncate(time.Second),
			RequestedAt:                     requestedAt.UTC().Truncate(time.Second),
			AuthenticationMethodsReferences: []string{"pwd"},
			Extra:                           userClaims(user, scopes),
		},
		Headers: &jwt.Headers{},
	}
}

// PopulateTokenEndpointResponse redeems the approved code and issues the
// tokens, as the code flow does: an access token in the client's format,
// a refresh token when the client has the refresh_token grant, and an ID
// token when openid was granted. A resource on the token request narrows
// the access token (RFC 8707 2.2). The writes are one savepoint: a failure
// leaves the code approved, for the device to retry.
func (g *deviceGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) (err error) {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	n, err := deviceNarrowing(r)
	if err != nil {
		return err
	}
	if n != nil {
		ctx = storage.WithNarrowing(ctx, n)
	}
	ctx, err = g.store.BeginTX(ctx)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	defer func() {
		if err != nil {
			_ = g.store.Rollback(ctx)
		}
	}()
	if err := g.issue(ctx, r, resp); err != nil {
		return err
	}
	if err := g.store.Commit(ctx); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	return nil
}

func (g *deviceGrant) issue(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	sig := deviceCodeSignature(r.GetRequestForm().Get("device_code"))
	if err := g.store.RedeemDeviceCode(ctx, sig, r.GetID()); errors.Is(err, storage.ErrDeviceCodeDecided) {
		return fosite.ErrInvalidGrant.WithHint("The device code was already exchanged for tokens; a device code is single-use.")
	} else if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	access, accessSig, err := g.strategy.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := g.store.CreateAccessTokenSession(ctx, accessSig, r.Sanitize([]string{})); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	client := r.GetClient()
	var refresh string
	if client.GetGrantTypes().Has("refresh_token") {
		var refreshSig string
		if refresh, refreshSig, err = g.strategy.GenerateRefreshToken(ctx, r); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if err := g.store.CreateRefreshTokenSession(ctx, refreshSig, accessSig, r.Sanitize([]string{})); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(r.GetSession().GetExpiresAt(fosite.AccessToken).Sub(g.cfg.now()).Round(time.Second))
	resp.SetScopes(r.GetGrantedScopes())
	if refresh != "" {
		resp.SetExtra("refresh_token", refresh)
	}
	if !r.GetGrantedScopes().Has("openid") {
		return nil
	}
	sess, ok := r.GetSession().(openid.Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("the device grant's session is not an OpenID Connect session")
	}
	helper := &openid.IDTokenHandleHelper{IDTokenStrategy: g.strategy}
	sess.IDTokenClaims().AccessTokenHash = helper.GetAccessTokenHash(ctx, r, resp)
	lifespan := fosite.GetEffectiveLifespan(client, fosite.GrantType(deviceCodeGrant), fosite.IDToken, g.config.GetIDTokenLifespan(ctx))
	// fosite's ID token checks read prompt, max_age and id_token_hint
	// from the request's form: the token request's are the device's own
	// words, not an authorization request's, and must not fail the grant.
	var idReq fosite.Requester = r
	if ar, ok := r.(*fosite.AccessRequest); ok {
		clean := *ar
		clean.Form = url.Values{"grant_type": {deviceCodeGrant}}
		idReq = &clean
	}
	if err := helper.IssueExplicitIDToken(ctx, lifespan, idReq, resp); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	return nil
}

// deviceNarrowing is the narrowing a token request's resource asks for
// (nil for none): each must be among the resources the device was
// granted (RFC 8707 2.2).
func deviceNarrowing(r fosite.AccessRequester) (*storage.Narrowing, error) {
	resources, err := requestedResources(r.GetRequestForm())
	if err != nil || len(resources) == 0 {
		return nil, err
	}
	for _, res := range resources {
		if !slices.Contains(r.GetGrantedAudience(), res) {
			return nil, errInvalidTarget("The resource %q was not granted to this device; a token request can narrow the resources granted, not add to them.", res)
		}
	}
	return &storage.Narrowing{Audience: resources}, nil
}
