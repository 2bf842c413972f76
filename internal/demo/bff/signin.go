package bff

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// login starts a sign-in; "Sign in" links here.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	returnTo := "/"
	if r.URL.Query().Get("return_to") == "/contacts" {
		returnTo = "/contacts"
	}
	s.startLogin(w, r, returnTo)
}

// startLogin sends the browser to the authorization endpoint with a fresh
// state, nonce and PKCE verifier, kept here under the pre-login cookie.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	if c, err := r.Cookie(loginCookie); err == nil {
		s.logins.remove(c.Value)
	}
	pl := &pendingLogin{state: rand.Text(), nonce: rand.Text(), verifier: oauth2.GenerateVerifier(), returnTo: returnTo}
	id, err := s.logins.add(pl, loginLifetime)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress. Please try again later.", err)
		return
	}
	s.setCookie(w, loginCookie, id, loginLifetime)
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(pl.nonce), oauth2.S256ChallengeOption(pl.verifier)}, s.resourceOption()...)
	http.Redirect(w, r, s.oauth.AuthCodeURL(pl.state, opts...), http.StatusSeeOther)
}

// callback serves the redirect URI: it checks the state against the
// sign-in this browser started, exchanges the code, verifies the ID token
// and starts a session.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	var pl *pendingLogin
	if c, err := r.Cookie(loginCookie); err == nil {
		pl, _ = s.logins.take(c.Value)
	}
	s.clearCookie(w, loginCookie)
	switch {
	case pl == nil:
		s.fail(w, r, http.StatusBadRequest, "No sign-in is in progress in this browser, or it took longer than 10 minutes. Please sign in again.", nil)
		return
	case !equal(q.Get("state"), pl.state):
		s.fail(w, r, http.StatusBadRequest, "This sign-in response does not belong to the sign-in this browser started (state mismatch). Please sign in again.", nil)
		return
	case q.Has("iss") && q.Get("iss") != s.cfg.Issuer: // RFC 9207
		s.fail(w, r, http.StatusBadRequest, "This sign-in response comes from another authorization server.", nil)
		return
	}
	if code := q.Get("error"); code != "" {
		if code == "access_denied" {
			s.fail(w, r, http.StatusForbidden, "You denied access.", nil)
			return
		}
		msg := "Sign-in failed: " + code
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		s.fail(w, r, http.StatusBadGateway, msg, nil)
		return
	}
	code := q.Get("code")
	if code == "" {
		s.fail(w, r, http.StatusBadRequest, "The sign-in response has no code.", nil)
		return
	}
	opts := append([]oauth2.AuthCodeOption{oauth2.VerifierOption(pl.verifier)}, s.resourceOption()...)
	tok, err := s.oauth.Exchange(s.clientContext(ctx), code, opts...)
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "The authorization code could not be exchanged for tokens.", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		s.fail(w, r, http.StatusBadGateway, "The authorization server sent no ID token.", nil)
		return
	}
	idt, err := s.verifier.Verify(ctx, rawID)
	if err == nil && !equal(idt.Nonce, pl.nonce) {
		err = errors.New("the ID token's nonce is not the one sent")
	}
	if err == nil && idt.AccessTokenHash != "" {
		err = idt.VerifyAccessToken(tok.AccessToken)
	}
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "The ID token is not valid.", err)
		return
	}
	var claims struct {
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
		Email             string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil {
		s.fail(w, r, http.StatusBadGateway, "The ID token is not valid.", err)
		return
	}
	sess := &session{
		sub:      idt.Subject,
		username: claims.PreferredUsername,
		name:     cmp.Or(claims.Name, claims.PreferredUsername, claims.Email, idt.Subject),
		csrf:     rand.Text(),
		token:    tok,
		idToken:  rawID,
	}
	// A new id at every sign-in: a session id known before it cannot be
	// made to stand for this user (session fixation).
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(c.Value)
	}
	id, err := s.sessions.add(sess, sessionLifetime)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Too many people are signed in. Please try again later.", err)
		return
	}
	s.setCookie(w, sessionCookie, id, sessionLifetime)
	s.log.Info("signed in", "sub", sess.sub)
	http.Redirect(w, r, pl.returnTo, http.StatusSeeOther)
}

// logout serves "Sign out": it ends the BFF session, revokes the refresh
// token (best effort) and sends the browser to the provider's
// end_session_endpoint, which ends the provider's session and comes back
// to the post-logout redirect URI with our state.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := s.crossOrigin.Check(r); err != nil {
		s.fail(w, r, http.StatusForbidden, "A sign-out from another site was refused.", nil)
		return
	}
	sess, id := s.session(r)
	if sess == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !equal(r.PostFormValue("csrf_token"), sess.csrf) {
		s.fail(w, r, http.StatusForbidden, "This form has expired. Reload the page and try again.", nil)
		return
	}
	s.sessions.remove(id)
	s.clearCookie(w, sessionCookie)
	tok, idToken := sess.tokens()
	s.revoke(r.Context(), tok)
	s.log.Info("signed out", "sub", sess.sub)
	if s.endSessionURL == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	state := rand.Text()
	s.setCookie(w, logoutCookie, state, loginLifetime)
	q := url.Values{
		"client_id":                {s.cfg.ClientID},
		"post_logout_redirect_uri": {s.cfg.PostLogoutRedirectURI},
		"state":                    {state},
	}
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	sep := "?"
	if strings.Contains(s.endSessionURL, "?") {
		sep = "&"
	}
	http.Redirect(w, r, s.endSessionURL+sep+q.Encode(), http.StatusSeeOther)
}

// revoke revokes the refresh token (which takes its access tokens along)
// or, without one, the access token (RFC 7009). It is best effort: a
// failure is logged, and the session is gone either way.
func (s *Server) revoke(ctx context.Context, tok *oauth2.Token) {
	if s.revocationURL == "" || tok == nil {
		return
	}
	token, hint := tok.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = tok.AccessToken, "access_token"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.revocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		s.log.Warn("revocation failed", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// client_secret_basic, form-urlencoded first (RFC 6749 2.3.1).
	req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	resp, err := s.client.Do(req)
	if err != nil {
		s.log.Warn("revocation failed", "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.log.Warn("revocation failed", "status", resp.StatusCode)
	}
}

// Discovery retries start at retryMin and double up to retryMax.
const (
	retryMin = 250 * time.Millisecond
	retryMax = 2 * time.Second
)

// discover fetches the provider's discovery document. While the issuer is
// unreachable or answers with an error it tries again, until timeout.
func discover(ctx context.Context, client *http.Client, issuer string, timeout time.Duration, logger *slog.Logger) (*oidc.Provider, error) {
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := retryMin
	for attempt := 1; ; attempt++ {
		p, err := oidc.NewProvider(oidc.ClientContext(deadline, client), issuer)
		if err == nil {
			return p, nil
		}
		var mismatch *oidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		logger.Warn("the issuer is not ready; retrying", "issuer", issuer, "attempt", attempt, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-deadline.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("discovery at %s: gave up after %s: %w", issuer, timeout, err)
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}
