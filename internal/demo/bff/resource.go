package bff

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// resourceOption adds RFC 8707's resource to an authorization request or
// a code exchange, when the BFF is configured with one.
func (s *Server) resourceOption() []oauth2.AuthCodeOption {
	if s.cfg.Resource == "" {
		return nil
	}
	return []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("resource", s.cfg.Resource)}
}

// token returns src while it is valid, else refreshes it. x/oauth2 cannot
// add parameters to a refresh, so with a Resource the BFF refreshes by
// itself, asking for the resource again (RFC 8707 2.2).
func (s *Server) token(ctx context.Context, src *oauth2.Token) (*oauth2.Token, error) {
	if s.cfg.Resource == "" {
		return s.oauth.TokenSource(s.clientContext(ctx), src).Token()
	}
	if src.Valid() {
		return src, nil
	}
	return s.refresh(ctx, src.RefreshToken)
}

// refresh is the refresh_token grant with resource, authenticated with
// client_secret_basic. An error answer is an *oauth2.RetrieveError, as
// from x/oauth2.
func (s *Server) refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "resource": {s.cfg.Resource}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.oauth.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("refresh: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		return nil, &oauth2.RetrieveError{Response: resp, Body: body, ErrorCode: e.Error, ErrorDescription: e.Description}
	}
	var raw map[string]any
	var fields struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("refresh: the answer is not JSON: %w", err)
	}
	if err := json.Unmarshal(body, &fields); err != nil || fields.AccessToken == "" {
		return nil, fmt.Errorf("refresh: the answer has no access_token (%v)", err)
	}
	tok := &oauth2.Token{AccessToken: fields.AccessToken, TokenType: fields.TokenType, RefreshToken: fields.RefreshToken}
	if tok.RefreshToken == "" { // not rotated: keep using it
		tok.RefreshToken = refreshToken
	}
	if fields.ExpiresIn > 0 {
		tok.Expiry = time.Now().Add(time.Duration(fields.ExpiresIn) * time.Second)
	}
	return tok.WithExtra(raw), nil
}
