package authz

// Pushed authorization requests (RFC 9126).
//
// A client posts its authorize parameters to POST /oauth2/par, authenticated
// as at the token endpoint, and gets a request_uri for them. The request is
// validated there as /oauth2/authorize would validate it before anyone signs
// in, and again, in full, when the browser brings the request_uri to
// /oauth2/authorize: the pushed parameters replace the request's, and every
// check of a front-channel request applies to them.
//
// Our login and consent pages post the authorize parameters back to
// /oauth2/authorize. For a pushed request they post back only client_id and
// request_uri, never the resolved parameters, so a page post can neither
// change what was pushed nor stand in for a pushed request (a client that
// requires PAR is refused on GET and POST alike without a request_uri). To
// let the request_uri resolve again after the first GET, its first use binds
// it to the browser (the CSRF cookie) instead of spending it:
//
//   - the first /oauth2/authorize with the request_uri claims it for that
//     browser and gives the person parHold to sign in and consent; a claim
//     from any other browser fails, so of two racing uses one wins;
//   - the same browser resolves it again on each page post;
//   - issuing the code spends it, in the code's own transaction: one pushed
//     request, one code.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
)

// parURIPrefix starts every request_uri we issue (RFC 9126 2.2).
const parURIPrefix = "urn:ietf:params:oauth:request_uri:"

// parHold is how long a request_uri stays usable, in the browser that
// first used it, for the person to sign in and consent.
const parHold = 30 * time.Minute

// clientAuthFields are the client authentication parameters of a pushed
// request: they authenticate the push and are not stored with it.
var clientAuthFields = []string{"client_secret", "client_assertion", "client_assertion_type"}

// par serves POST /oauth2/par: it authenticates the client, validates the
// request as the authorize endpoint does before sign-in, stores it and
// answers 201 with its request_uri.
func (h *Handler) par(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseMultipartForm(maxFormBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		h.writePARError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	// The parameters travel in the body (RFC 9126 2.1); the query is not
	// part of the request.
	r.Form = cloneValues(r.PostForm)
	if dup := duplicateParameter(r.Form); dup != "" {
		h.writePARError(w, r, nil, errDuplicate(dup))
		return
	}
	// The pushed form is stored as JSON text, which can hold neither NUL
	// nor bytes that are not UTF-8: such a value is the client's error.
	if name := unstorableParameter(r.Form); name != "" {
		h.writePARError(w, r, nil, fosite.ErrInvalidRequest.WithHintf("The parameter %q holds a NUL character or bytes that are not UTF-8.", name))
		return
	}
	if err := h.prefetchClientKeys(ctx, r.Form); err != nil {
		h.writePARError(w, r, nil, err)
		return
	}
	// A PKCE request may leave out state (see authorize); fosite insists
	// on one, so it sees the stand-in, which is not stored.
	standIn := false
	if mode := r.Form.Get("response_mode"); r.Form.Get("state") == "" && r.Form.Get("code_challenge") != "" && r.Form.Get("response_type") == "code" && (mode == "" || mode == "query") {
		r.Form.Set("state", standInState)
		standIn = true
	}
	ar, err := h.provider.NewPushedAuthorizeRequest(ctx, r)
	if err == nil {
		err = h.checkPushed(ar)
	}
	if err != nil {
		h.writePARError(w, r, ar, err)
		return
	}
	// Client credentials authenticated the push; our pages' own fields
	// mean nothing in it. Neither is stored.
	form := ar.GetRequestForm()
	for _, k := range append(clientAuthFields, pageFields...) {
		form.Del(k)
	}
	if standIn {
		form.Del("state")
	}
	sess := &parSession{DefaultSession: openid.NewDefaultSession(), expiresAt: h.cfg.now().UTC().Add(h.cfg.parLifespan())}
	resp, err := h.provider.NewPushedAuthorizeResponse(ctx, ar, sess)
	if err == nil && resp.GetRequestURI() == "" {
		// fosite's handler stores nothing for a response type it does
		// not know; validation has refused those already.
		err = fosite.ErrUnsupportedResponseType.WithHint("The response_type cannot be pushed.")
	}
	if err != nil {
		h.writePARError(w, r, ar, err)
		return
	}
	h.provider.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// checkPushed applies the authorize endpoint's own checks that fosite does
// not make: PKCE for public clients, prompt and resource indicators.
func (h *Handler) checkPushed(ar fosite.AuthorizeRequester) error {
	client, ok := ar.GetClient().(*storage.Client)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected client type")
	}
	if ar.GetResponseTypes().Has("code") {
		if err := h.checkPKCE(client, ar.GetRequestForm()); err != nil {
			return err
		}
	}
	if _, err := parsePrompt(ar.GetRequestForm()); err != nil {
		return err
	}
	return requestResources(ar)
}

// writePARError answers a refused push with RFC 6749 5.2 JSON.
func (h *Handler) writePARError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	ctx := r.Context()
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		failed(ctx, err)
	} else {
		h.log.Debug("pushed authorization request rejected", "request_id", requestID(ctx), "client_id", clip(r.Form.Get("client_id")),
			"error", rfc.ErrorField, "description", rfc.HintField)
	}
	if rfc.CodeField == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="authz", error="invalid_client"`)
	}
	setRetryAfterFor(w.Header(), err)
	h.provider.WritePushedAuthorizeError(ctx, w, ar, err)
}

// parSession stamps a pushed request's expiry on our clock: fosite's PAR
// handler stamps it from time.Now, which tests cannot move.
type parSession struct {
	*openid.DefaultSession
	expiresAt time.Time
}

func (s *parSession) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if key == fosite.PushedAuthorizeRequestContext {
		exp = s.expiresAt
	}
	s.DefaultSession.SetExpiresAt(key, exp)
}

// pushed is a pushed request resolved at the authorize endpoint for one
// browser.
type pushed struct {
	requestURI, clientID string
	browser              string // the CSRF cookie it is bound to
}

type pushedKey struct{}

func pushedOf(r *http.Request) *pushed {
	p, _ := r.Context().Value(pushedKey{}).(*pushed)
	return p
}

// errUnknownPushed refuses a request_uri that names no pushed request this
// browser may use (RFC 9126 4). It is shown on our page: the request's
// redirect_uri is not to be trusted then.
func errUnknownPushed() error {
	return fosite.ErrInvalidRequest.WithHint("The request_uri is unknown, expired or already used, or was pushed by another client.")
}

// errPARRequired refuses a front-channel request where PAR is required.
func errPARRequired() error {
	return fosite.ErrInvalidRequest.WithHint("This client must push its authorization requests to /oauth2/par (RFC 9126) and send the request_uri.")
}

// resolvePushed replaces the parameters of an authorize request that names
// a request_uri with those pushed (RFC 9126 4). Only client_id and
// request_uri are taken from the URL or the page's form: every other
// parameter there (redirect_uri, scope, state, PKCE, prompt, resource,
// nonce, …) is ignored, so a link or a post cannot alter what the client
// pushed. The returned request carries the resolution (pushedOf).
func (h *Handler) resolvePushed(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	for _, k := range []string{"request_uri", "client_id"} {
		if len(r.Form[k]) > 1 {
			return r, errDuplicate(k)
		}
	}
	uri, clientID := r.Form.Get("request_uri"), r.Form.Get("client_id")
	if clientID == "" {
		return r, fosite.ErrInvalidRequest.WithHint("A request with a request_uri must carry the client_id that pushed it.")
	}
	if !strings.HasPrefix(uri, parURIPrefix) {
		return r, errUnknownPushed()
	}
	browser := h.browserBinding(w, r)
	form, err := h.store.ClaimPAR(r.Context(), uri, clientID, browser, h.cfg.now().Add(parHold))
	if errors.Is(err, storage.ErrNotFound) {
		return r, errUnknownPushed()
	}
	if err != nil {
		return r, fosite.ErrServerError.WithWrap(err)
	}
	form.Set("client_id", clientID)
	r.Form, r.PostForm = form, url.Values{}
	return r.WithContext(context.WithValue(r.Context(), pushedKey{}, &pushed{requestURI: uri, clientID: clientID, browser: browser})), nil
}

// browserBinding is what binds a pushed request to this browser: its CSRF
// cookie, set now when it has none yet. The new cookie is added to r too,
// so the form this response shows is made for it.
func (h *Handler) browserBinding(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(h.csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	value := base64.RawURLEncoding.EncodeToString(b)
	h.setCookie(w, h.csrfCookie, value, time.Time{})
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != h.csrfCookie {
			r.AddCookie(c)
		}
	}
	r.AddCookie(&http.Cookie{Name: h.csrfCookie, Value: value})
	return value
}

// parRequired reports whether client must use a pushed request.
func (h *Handler) parRequired(client fosite.Client) bool {
	if h.cfg.RequirePAR {
		return true
	}
	c, ok := client.(*storage.Client)
	return ok && c.RequirePushedAuthorizationRequests
}

// carriedFields are the hidden fields a page posts back to the authorize
// endpoint: the request's parameters, or for a pushed request only
// client_id and request_uri, which resolve again to what was pushed.
func carriedFields(r *http.Request, ar fosite.AuthorizeRequester) []hiddenField {
	if p := pushedOf(r); p != nil {
		return []hiddenField{{Name: "client_id", Value: p.clientID}, {Name: "request_uri", Value: p.requestURI}}
	}
	return hiddenFields(clientParams(ar))
}

// errPushedSpent: the pushed request was spent by a concurrent request of
// the same browser before this one could issue its code.
var errPushedSpent = errors.New("pushed request already spent")

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// unstorableParameter returns the name of a parameter of form whose name
// or a value has a NUL or invalid UTF-8, or "".
func unstorableParameter(form url.Values) string {
	bad := func(v string) bool { return !utf8.ValidString(v) || strings.ContainsRune(v, 0) }
	for k, vs := range form {
		if bad(k) {
			return "(a name)"
		}
		for _, v := range vs {
			if bad(v) {
				return k
			}
		}
	}
	return ""
}
