package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// userinfo serves GET and POST /userinfo (OpenID Connect Core 5.3): the
// claims of the token's user that its granted scopes release. The user is
// read now, so a change of name or email shows at once; a deleted or
// disabled user's token is no longer good here.
func (h *Handler) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		h.bearerError(w, http.StatusUnauthorized, "", "")
		return
	}
	use, ar, err := h.provider.IntrospectToken(ctx, token, fosite.AccessToken, openid.NewDefaultSession())
	if err != nil || use != fosite.AccessToken {
		if err != nil && fosite.ErrorToRFC6749Error(err).CodeField >= 500 &&
			!errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, fosite.ErrInactiveToken) {
			// Not invalid_token: the token may well be active.
			failed(ctx, err)
			http.Error(w, "server error", http.StatusInternalServerError)
			return
		}
		h.bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is not active.")
		return
	}
	scopes := ar.GetGrantedScopes()
	if !scopes.Has("openid") {
		h.bearerError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope.")
		return
	}
	user, err := h.store.User(ctx, ar.GetSession().GetSubject())
	if errors.Is(err, storage.ErrNotFound) || (err == nil && user.Disabled) {
		h.bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token's user no longer exists.")
		return
	}
	if err != nil {
		failed(ctx, err)
		http.Error(w, "server error", http.StatusInternalServerError)
		return
	}
	claims := userClaims(user, scopes)
	claims["sub"] = h.subjects.of(ar.GetClient(), user.ID)
	w.Header().Set("Cache-Control", "no-store")
	if c, ok := ar.GetClient().(*storage.Client); ok && c.UserinfoSignedResponseAlg != "" {
		signed, err := h.signUserinfo(ctx, c, claims)
		if err != nil {
			failed(ctx, err)
			http.Error(w, "server error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwt")
		_, _ = w.Write([]byte(signed))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(claims)
}

// signUserinfo is the signed userinfo answer (OpenID Connect Core 5.3.2)
// for a client registered with userinfo_signed_response_alg: the claims
// with iss and aud, signed with that algorithm's current ID token key.
func (h *Handler) signUserinfo(ctx context.Context, c *storage.Client, claims map[string]any) (string, error) {
	claims["iss"] = h.cfg.Issuer
	claims["aud"] = c.GetID()
	claims["iat"] = h.cfg.now().Unix()
	token, _, err := h.signer.Generate(withSigningAlg(ctx, c.UserinfoSignedResponseAlg), jwt.MapClaims(claims), &jwt.Headers{})
	if err != nil {
		return "", fmt.Errorf("sign userinfo: %w", err)
	}
	return token, nil
}

// bearerError answers as RFC 6750 3 asks: a WWW-Authenticate challenge, and
// with an error code only when the request carried a token.
func (h *Handler) bearerError(w http.ResponseWriter, status int, code, description string) {
	challenge := `Bearer realm="authz"`
	if code != "" {
		challenge += `, error="` + code + `", error_description="` + strings.ReplaceAll(description, `"`, `'`) + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if code != "" {
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
	}
}
