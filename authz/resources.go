package authz

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/authz/authz/storage"
)

// Resource indicators (RFC 8707). A client names the APIs it wants a token
// for with resource (repeatable, an absolute URI without fragment); it may
// name only what it is registered for (its audience list). What was
// granted at authorization is bound to the code and the refresh family; a
// token request may narrow it for the token it gets, never widen it. The
// access token's audience (introspection's aud, a JWT's aud) is exactly
// what was granted.

// errInvalidTarget is RFC 8707 2's error for a resource that may not be
// asked for.
func errInvalidTarget(format string, args ...any) *fosite.RFC6749Error {
	return (&fosite.RFC6749Error{
		ErrorField:       "invalid_target",
		DescriptionField: "The requested resource is invalid, missing, unknown, or malformed.",
		CodeField:        http.StatusBadRequest,
	}).WithHintf(format, args...)
}

// requestedResources reads and checks the resource parameters of form:
// each an absolute URI without fragment (RFC 8707 2), at most
// maxAudiences, duplicates dropped.
func requestedResources(form url.Values) ([]string, error) {
	values := form["resource"]
	if len(values) > maxAudiences {
		return nil, errInvalidTarget("At most %d resource parameters may be sent.", maxAudiences)
	}
	var out []string
	for _, v := range values {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Host == "" && u.Opaque == "" {
			return nil, errInvalidTarget("The resource %q is not an absolute URI.", v)
		}
		if u.Fragment != "" || strings.Contains(v, "#") {
			return nil, errInvalidTarget("The resource %q has a fragment, which RFC 8707 forbids.", v)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkResources refuses a resource the client is not registered for.
// Matching is exact: a resource server's identifier is the URI it was
// registered with, not anything under it.
func checkResources(c fosite.Client, resources []string) error {
	for _, res := range resources {
		if !slices.Contains(c.GetAudience(), res) {
			return errInvalidTarget("The client is not registered for the resource %q; ask the operator to add it to the client's audience.", res)
		}
	}
	return nil
}

// grantScoping wraps the grant handlers that issue tokens from an earlier
// grant (the authorization code and the refresh token) or from nothing
// (client credentials) so that a token request's resource, and on refresh
// its scope, narrow what the new access token carries (RFC 8707 2.2, RFC
// 6749 6). The refresh token issued beside it keeps the whole grant
// (storage.Narrowing).
type grantScoping struct {
	fosite.TokenEndpointHandler
	kind grantKind
	// codeGrant returns what the code of a code exchange was granted.
	codeGrant func(ctx context.Context, r fosite.AccessRequester) (scopes, audience []string, err error)
}

type grantKind uint8

const (
	codeGrant grantKind = iota + 1
	refreshGrant
	clientGrant // client credentials: resources come from the registration
)

// scopeGrants wraps h when it is one of the grant handlers above.
func scopeGrants(h fosite.TokenEndpointHandler, codeGrantOf func(ctx context.Context, r fosite.AccessRequester) ([]string, []string, error)) fosite.TokenEndpointHandler {
	switch h.(type) {
	case *oauth2.AuthorizeExplicitGrantHandler:
		return grantScoping{TokenEndpointHandler: h, kind: codeGrant, codeGrant: codeGrantOf}
	case *oauth2.RefreshTokenGrantHandler:
		return grantScoping{TokenEndpointHandler: h, kind: refreshGrant}
	case *oauth2.ClientCredentialsGrantHandler:
		return grantScoping{TokenEndpointHandler: h, kind: clientGrant}
	}
	return h
}

func (g grantScoping) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if err := g.TokenEndpointHandler.HandleTokenEndpointRequest(ctx, r); err != nil || g.kind != clientGrant {
		return err
	}
	resources, err := requestedResources(r.GetRequestForm())
	if err != nil {
		return err
	}
	if err := checkResources(r.GetClient(), resources); err != nil {
		return err
	}
	// fosite's handler has checked the scopes and audience asked for
	// against the registration but grants nothing: with no person to
	// consent, what the client may ask for and asked for is granted.
	for _, s := range r.GetRequestedScopes() {
		r.GrantScope(s)
	}
	r.SetRequestedAudience(appendNew(r.GetRequestedAudience(), resources...))
	for _, a := range r.GetRequestedAudience() {
		r.GrantAudience(a)
	}
	return nil
}

func (g grantScoping) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if g.kind == clientGrant || !g.CanHandleTokenEndpointRequest(ctx, r) {
		return g.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, r, resp)
	}
	n, err := g.narrowing(ctx, r)
	if err != nil {
		return err
	}
	if n != nil {
		ctx = storage.WithNarrowing(ctx, n)
	}
	return g.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, r, resp)
}

// narrowing checks what the request asks its access token to carry
// against the grant it draws on: nil when it asks for the whole grant.
// A refresh has its grant on the request already; a code exchange gets
// it from the code once fosite's handler copies it over, so it is read
// from the code here.
func (g grantScoping) narrowing(ctx context.Context, r fosite.AccessRequester) (*storage.Narrowing, error) {
	form := r.GetRequestForm()
	resources, err := requestedResources(form)
	if err != nil {
		return nil, err
	}
	scope, narrowScope := form["scope"]
	narrowScope = narrowScope && g.kind == refreshGrant
	if len(resources) == 0 && !narrowScope {
		return nil, nil
	}
	grantedScopes, grantedAudience := []string(r.GetGrantedScopes()), []string(r.GetGrantedAudience())
	if g.kind == codeGrant {
		if grantedScopes, grantedAudience, err = g.codeGrant(ctx, r); err != nil {
			return nil, err
		}
	}
	var n storage.Narrowing
	for _, res := range resources {
		if !slices.Contains(grantedAudience, res) {
			return nil, errInvalidTarget("The resource %q was not granted to this authorization; a token request can narrow the resources granted, not add to them.", res)
		}
	}
	if len(resources) > 0 {
		n.Audience = resources
	}
	if narrowScope {
		want := fosite.RemoveEmpty(strings.Split(strings.Join(scope, " "), " "))
		for _, s := range want {
			if !slices.Contains(grantedScopes, s) {
				return nil, fosite.ErrInvalidScope.WithHintf("The scope %q was not granted to this refresh token; a refresh can narrow the scope, not widen it.", s)
			}
		}
		if len(want) > 0 {
			n.Scopes = want
		}
	}
	return &n, nil
}

// appendNew appends the values of add that a does not hold yet.
func appendNew(a []string, add ...string) []string {
	for _, v := range add {
		if !slices.Contains(a, v) {
			a = append(a, v)
		}
	}
	return a
}

// requestResources adds the resources an authorization request names to
// what it asks for, once they are known to be the client's.
func requestResources(ar fosite.AuthorizeRequester) error {
	resources, err := requestedResources(ar.GetRequestForm())
	if err != nil {
		return err
	}
	if err := checkResources(ar.GetClient(), resources); err != nil {
		return err
	}
	ar.SetRequestedAudience(appendNew(ar.GetRequestedAudience(), resources...))
	return nil
}

// repeatable are the parameters that may be sent more than once:
// resource (RFC 8707) and fosite's audience.
var repeatable = []string{"resource", "audience"}

// duplicateParameter returns the name of a parameter form holds more than
// once, other than a repeatable one, or "". The lowest name is returned,
// so the answer does not depend on map order.
func duplicateParameter(form url.Values) string {
	dup := ""
	for k, v := range form {
		if len(v) > 1 && !slices.Contains(repeatable, k) && (dup == "" || k < dup) {
			dup = k
		}
	}
	return dup
}

// errDuplicate refuses a request that sent a parameter twice (RFC 6749
// 3.1: parameters MUST NOT be included more than once).
func errDuplicate(name string) error {
	return fosite.ErrInvalidRequest.WithHintf("The parameter %q was sent more than once; each may be sent only once.", name)
}
