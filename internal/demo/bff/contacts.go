package bff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// contacts serves "Get contacts": it calls the API with the session's
// access token, refreshed first when it has expired. Without a session it
// signs the user in first and comes back here.
func (s *Server) contacts(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, id := s.session(r)
	if sess == nil {
		s.startLogin(w, r, "/contacts")
		return
	}
	tok, err := s.accessToken(ctx, sess, "")
	var doc *contactsDoc
	var status int
	var challenge string
	if err == nil {
		doc, status, challenge, err = s.callAPI(ctx, tok.AccessToken)
	}
	if err == nil && status == http.StatusUnauthorized {
		// The API no longer takes the token (it was revoked, say): get a
		// new one with the refresh token, once.
		if tok, err = s.accessToken(ctx, sess, tok.AccessToken); err == nil {
			doc, status, challenge, err = s.callAPI(ctx, tok.AccessToken)
		}
	}
	switch {
	case errors.Is(err, errSignInAgain):
		s.log.Info("the session's tokens cannot be renewed; signing in again", "sub", sess.sub, "err", err)
		s.sessions.remove(id)
		s.clearCookie(w, sessionCookie)
		s.startLogin(w, r, "/contacts")
	case err != nil:
		s.fail(w, r, http.StatusBadGateway, "The contacts could not be fetched. Please try again.", err)
	case status == http.StatusOK:
		if doc.Username == "" && doc.Sub == sess.sub {
			// An API that verifies JWT access tokens knows the sub only.
			doc.Username = sess.username
		}
		s.render(w, http.StatusOK, sess, pageData{Contacts: doc})
	case status == http.StatusForbidden && strings.Contains(challenge, `error="insufficient_scope"`):
		s.fail(w, r, http.StatusForbidden, "The contacts API refused: the access token was not granted the contacts scope (403 insufficient_scope).", nil)
	case status == http.StatusForbidden:
		s.fail(w, r, http.StatusForbidden, "The contacts API refused: 403 Forbidden.", nil)
	default:
		s.fail(w, r, http.StatusBadGateway, fmt.Sprintf("The contacts API answered %d %s.", status, http.StatusText(status)), nil)
	}
}

// errSignInAgain means the session can get no more access tokens.
var errSignInAgain = errors.New("the refresh token is gone or no longer accepted")

// accessToken returns a valid access token of the session, refreshing it
// when it has expired, or when the API rejected it (rejected is that
// token) and no other request has replaced it since. A refreshed token is
// kept in the session.
func (s *Server) accessToken(ctx context.Context, sess *session, rejected string) (*oauth2.Token, error) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	cur := sess.token
	src := cur
	if rejected != "" {
		if cur.AccessToken != rejected {
			return cur, nil
		}
		src = &oauth2.Token{RefreshToken: cur.RefreshToken} // forces a refresh
	}
	if !src.Valid() && src.RefreshToken == "" {
		return nil, errSignInAgain
	}
	tok, err := s.token(ctx, src)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusBadRequest {
		return nil, fmt.Errorf("%w: %v", errSignInAgain, err) // invalid_grant: revoked, expired, reused
	}
	if err != nil {
		return nil, err
	}
	if tok == src {
		return cur, nil // still valid
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if idt, err := s.verifier.Verify(ctx, raw); err != nil || idt.Subject != sess.sub {
			s.log.Warn("refresh brought an ID token that does not verify; keeping the old one", "err", err)
		} else {
			sess.idToken = raw
		}
	}
	sess.token = tok
	s.log.Info("refreshed the access token", "sub", sess.sub)
	return tok, nil
}

// contactsDoc is the contacts API's answer.
type contactsDoc struct {
	Sub      string `json:"sub"`
	Username string `json:"username"`
	Contacts []struct {
		Name  string `json:"name"`
		Email string `json:"email"`
		Phone string `json:"phone"`
	} `json:"contacts"`
}

// callAPI calls GET APIURL/contacts with the access token. Unless it
// fails, it returns the API's status, its WWW-Authenticate challenge, and
// for 200 the contacts.
func (s *Server) callAPI(ctx context.Context, accessToken string) (*contactsDoc, int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.APIURL+"/contacts", nil)
	if err != nil {
		return nil, 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, "", fmt.Errorf("contacts API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), nil
	}
	var doc contactsDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, 0, "", fmt.Errorf("contacts API: the answer is not JSON: %w", err)
	}
	return &doc, http.StatusOK, "", nil
}
