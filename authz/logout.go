package authz

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// logoutRequest is an RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0 §2), checked.
type logoutRequest struct {
	hintSubject string // sub of a valid id_token_hint
	client      *storage.Client
	target      *url.URL // post_logout_redirect_uri with state, when allowed
	hidden      []hiddenField
}

// logout serves GET and POST /oauth2/logout. A request whose id_token_hint
// names the signed-in user ends the session at once; any other asks the
// user first. Afterwards the browser goes to the client's registered
// post_logout_redirect_uri (exact match) with its state, or sees our page.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.logoutError(w, r, fosite.ErrInvalidRequest.WithHint("The request could not be parsed.").WithWrap(err))
		return
	}
	lr, err := h.parseLogout(r)
	if err != nil {
		h.logoutError(w, r, err)
		return
	}
	if lr.target != nil {
		h.allowFormRedirect(w, lr.target)
	}
	user, _, err := h.currentUser(ctx, r)
	if err != nil {
		h.logoutError(w, r, fosite.ErrServerError.WithWrap(err))
		return
	}

	action := ""
	if r.Method == http.MethodPost && r.PostForm.Get("action") == "" {
		// A relying party's form post (RP-initiated logout allows POST). It
		// comes cross-site, so our SameSite=Lax session cookie is not with
		// it: send the browser to the same request as a top-level GET, which
		// carries the cookie.
		q := url.Values{}
		for _, f := range lr.hidden {
			q.Set(f.Name, f.Value)
		}
		http.Redirect(w, r, h.base+"/oauth2/logout?"+q.Encode(), http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		if err := h.crossOrigin.Check(r); err != nil || !h.csrfValid(r, r.PostForm.Get("csrf_token")) {
			h.pages.renderError(w, http.StatusForbidden, errorPage{
				Title: "This form has expired", Message: "For your security the form could not be accepted. Please try again.", Code: "invalid_request",
				Reason: h.devReason(csrfReason), RequestID: requestID(ctx)})
			return
		}
		action = r.PostForm.Get("action")
	}
	switch {
	case action == "cancel":
		// Nothing changes, and the person is not left on a dead end: the
		// app that asked is offered (a link, not a redirect: it expected
		// a signed-out user) when it named a registered return address.
		still := loggedOutPage{StillSignedIn: true}
		if lr.target != nil && lr.client != nil {
			still.ContinueURL, still.ContinueName = template.URL(lr.target.String()), clientName(lr.client)
		}
		h.pages.renderLoggedOut(w, http.StatusOK, still)
	case action == "logout", user == nil, lr.hintSubject != "" && lr.hintSubject == h.subjects.of(lr.client, user.ID):
		if !h.endSession(w, r) {
			return
		}
		if lr.target != nil && lr.client != nil && lr.client.RegistrationTokenHash != "" {
			// A client that registered itself chose this address itself:
			// following it unasked would make us an open redirector for
			// anyone who registers (RFC 9700 4.11.2). Offer it instead.
			h.pages.renderLoggedOut(w, http.StatusOK, loggedOutPage{
				ContinueURL: template.URL(lr.target.String()), ContinueName: clientName(lr.client)})
			return
		}
		if lr.target != nil {
			http.Redirect(w, r, lr.target.String(), http.StatusSeeOther)
			return
		}
		h.pages.renderLoggedOut(w, http.StatusOK, loggedOutPage{})
	default:
		name := ""
		if lr.client != nil {
			name = clientName(lr.client)
		}
		h.pages.renderLogout(w, http.StatusOK, logoutPage{
			Action:     h.base + "/oauth2/logout",
			CSRFToken:  h.csrfToken(w, r),
			Hidden:     lr.hidden,
			ClientName: name,
		})
	}
}

// parseLogout validates the logout parameters. Errors are shown on our page:
// an unverified redirect target is never followed.
func (h *Handler) parseLogout(r *http.Request) (*logoutRequest, error) {
	ctx := r.Context()
	form := r.Form
	lr := &logoutRequest{}
	clientID := form.Get("client_id")
	if hint := form.Get("id_token_hint"); hint != "" {
		tok, err := h.signer.Decode(ctx, hint)
		var ve *jwt.ValidationError
		if err != nil && !(errors.As(err, &ve) && ve.Has(jwt.ValidationErrorExpired)) {
			return nil, fosite.ErrInvalidRequest.WithHint("The id_token_hint is not an ID token issued by this server.")
		}
		if iss, _ := tok.Claims["iss"].(string); iss != h.cfg.Issuer {
			return nil, fosite.ErrInvalidRequest.WithHint("The id_token_hint was issued by another server.")
		}
		lr.hintSubject, _ = tok.Claims["sub"].(string)
		aud := audiences(tok.Claims["aud"])
		switch {
		case clientID == "" && len(aud) > 0:
			clientID = aud[0]
		case clientID != "" && !slices.Contains(aud, clientID):
			return nil, fosite.ErrInvalidRequest.WithHint("The id_token_hint was not issued to this client_id.")
		}
	}
	if clientID != "" {
		c, err := h.store.GetClient(ctx, clientID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fosite.ErrInvalidRequest.WithHint("The client_id is not known.")
		}
		if err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		lr.client, _ = c.(*storage.Client)
	}
	if raw := form.Get("post_logout_redirect_uri"); raw != "" {
		if lr.client == nil {
			return nil, fosite.ErrInvalidRequest.WithHint("A post_logout_redirect_uri needs a client_id or an id_token_hint that names the client.")
		}
		if !slices.Contains(lr.client.PostLogoutRedirectURIs, raw) {
			registered := strings.Join(lr.client.PostLogoutRedirectURIs, ", ")
			if registered == "" {
				registered = "none"
			}
			return nil, fosite.ErrInvalidRequest.WithHintf("post_logout_redirect_uri %s is not registered for client %s; registered: %s",
				clip(raw), lr.client.ID, registered)
		}
		target, err := url.Parse(raw)
		if err != nil {
			return nil, fosite.ErrInvalidRequest.WithHint("The post_logout_redirect_uri is not a valid URI.")
		}
		if state := form.Get("state"); state != "" {
			q := target.Query()
			q.Set("state", state)
			target.RawQuery = q.Encode()
		}
		lr.target = target
	}
	for _, k := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state"} {
		if v := form.Get(k); v != "" {
			lr.hidden = append(lr.hidden, hiddenField{Name: k, Value: v})
		}
	}
	return lr, nil
}

// logoutError shows a refused or failed logout on our error page, never
// following an unverified redirect. Like an authorize refusal it is
// logged at info with its reason, which dev mode also shows on the page.
func (h *Handler) logoutError(w http.ResponseWriter, r *http.Request, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	reason := rfc.HintField
	if rfc.CodeField >= 500 {
		failed(r.Context(), err)
		reason = describeError(err).Error()
	} else {
		h.log.Info("logout request refused", "request_id", requestID(r.Context()), "client_id", clip(r.Form.Get("client_id")),
			"error", rfc.ErrorField, "reason", reason)
	}
	h.renderAuthorizeError(w, r, rfc, reason)
}

// endSession deletes the browser's login session and its cookie. It
// reports false after answering with an error.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request) bool {
	if c, err := r.Cookie(h.sessionCookie); err == nil && c.Value != "" {
		if err := h.store.DeleteLoginSession(r.Context(), c.Value); err != nil {
			h.logoutError(w, r, fosite.ErrServerError.WithWrap(err))
			return false
		}
	}
	h.clearCookie(w, h.sessionCookie)
	return true
}

// audiences reads an aud claim, a string or an array of strings.
func audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}
