package authz

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Token endpoint errors say what is wrong. fosite's error_description is a
// generic sentence per error code ("The provided authorization grant ...
// is invalid, expired, revoked, does not match ...") followed by a hint,
// and some hints mislead: a missing code_verifier is "must be at least 43
// characters", a revoked refresh token "already used". explainTokenError
// keeps the RFC 6749 5.2 error code and status, and makes the description
// the one specific reason.

// tokenHistory is what explainTokenError reads to tell apart code
// refusals that look alike to fosite; *storage.Store has it.
type tokenHistory interface {
	CodeHistory(ctx context.Context, signature string) (storage.CodeHistory, error)
}

// Hints of fosite v0.49 that explainTokenError replaces.
const (
	fositeEmptyBody     = "The POST body can not be empty."
	fositeCodeUsed      = "The authorization code has already been used."
	fositeRefreshUsed   = "The refresh token was already used."
	fositeShortVerifier = "The PKCE code verifier must be at least 43 characters."
)

// codeSpentNote ends the description of a failed exchange that used up
// the code, so the retry's "already used" is no surprise.
const codeSpentNote = " This code is now used up (a failed exchange spends the code); start a new authorization request."

// explainTokenError returns err for the client: a client error (4xx)
// whose description is its precise reason, without fosite's generic
// sentence; the error code, status and cause are unchanged. A server
// error is returned as it is.
func (h *Handler) explainTokenError(ctx context.Context, ar fosite.AccessRequester, err error) error {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 {
		return err
	}
	desc := h.tokenErrorReason(ctx, ar, err, rfc)
	if desc == "" {
		desc = rfc.HintField
	}
	if desc == "" {
		return err // nothing more specific than fosite's sentence
	}
	explained := &fosite.RFC6749Error{
		ErrorField:       rfc.ErrorField,
		DescriptionField: desc,
		CodeField:        rfc.CodeField,
		DebugField:       rfc.DebugField,
	}
	return explained.WithWrap(err)
}

// tokenErrorReason is the specific reason for the refusals whose hint
// misleads or is missing, or "" to keep the hint.
func (h *Handler) tokenErrorReason(ctx context.Context, ar fosite.AccessRequester, err error, rfc *fosite.RFC6749Error) string {
	if ar == nil {
		return ""
	}
	form := ar.GetRequestForm()
	if rfc.HintField == fositeEmptyBody || (len(form) == 0 && errors.Is(err, fosite.ErrInvalidRequest)) {
		return "The request has no form parameters. The token endpoint reads an application/x-www-form-urlencoded " +
			"body (RFC 6749 4.1.3); a JSON body is not read."
	}
	client := ar.GetClient()
	if client == nil || client.GetID() == "" { // not authenticated: say nothing about the grant
		return ""
	}
	switch {
	case ar.GetGrantTypes().ExactOne("authorization_code"):
		return h.codeErrorReason(ctx, client.GetID(), form.Get("code"), form, err, rfc)
	case ar.GetGrantTypes().ExactOne("refresh_token"):
		return refreshErrorReason(err, rfc)
	}
	return ""
}

// codeErrorReason explains a refused authorization code exchange by the
// client clientID.
func (h *Handler) codeErrorReason(ctx context.Context, clientID, code string, form url.Values, err error, rfc *fosite.RFC6749Error) string {
	lifespan := h.cfg.AuthorizeCodeLifespan
	switch {
	case code == "":
		return "" // fosite's hint names the missing parameter
	case errors.Is(err, fosite.ErrTokenExpired):
		return fmt.Sprintf("The authorization code has expired: a code must be exchanged within %s of the user's approval. "+
			"Start a new authorization request.", lifespan)
	case rfc.HintField == "" && errors.Is(err, fosite.ErrNotFound):
		return fmt.Sprintf("The authorization code is not one this server issued, or it expired (codes last %s) and was deleted. "+
			"Start a new authorization request.", lifespan)
	}
	reason := rfc.HintField
	if rfc.HintField == fositeShortVerifier && form.Get("code_verifier") == "" {
		reason = "The code_verifier parameter is missing: this code was issued for a PKCE code_challenge, " +
			"so its exchange must send the matching code_verifier."
	}
	hist, ok := h.codeHistory(ctx, code)
	if !ok || hist.ClientID != clientID {
		return reason // no more to say about another client's code
	}
	if strings.HasPrefix(rfc.HintField, fositeCodeUsed) {
		switch hist.Use {
		case storage.CodeExchanged:
			return "The authorization code was already exchanged for tokens. A code is single-use; as RFC 6749 4.1.2 " +
				"requires, the tokens issued from it are now revoked. Start a new authorization request."
		case storage.CodeSpentByFailure:
			return "The authorization code was spent by an earlier exchange that failed: a failed exchange uses up the " +
				"code, and no tokens were issued from it. Fix what that exchange's error said, then start a new authorization request."
		case storage.CodeUsedUnknown:
			return "The authorization code was already used: either exchanged for tokens (now revoked, as RFC 6749 4.1.2 " +
				"requires) or spent by an earlier exchange that failed, which also uses up the code. Start a new authorization request."
		}
		return reason
	}
	if strings.Contains(rfc.HintField, "redirect_uri") && strings.Contains(rfc.HintField, "does not match") && hist.RedirectURI != "" {
		reason = fmt.Sprintf("redirect_uri %s does not match the authorization request's redirect_uri %s.",
			quoteOrNone(form.Get("redirect_uri")), hist.RedirectURI)
	}
	if reason != "" && hist.Use != storage.CodeActive {
		reason += codeSpentNote
	}
	return reason
}

// refreshErrorReason explains a refused refresh: a token rotated away is
// not the same mistake as a revoked one. Only storage can tell them apart
// (storage.RefreshInactive); without that, the reason names both.
func refreshErrorReason(err error, rfc *fosite.RFC6749Error) string {
	var inactive *storage.RefreshInactive
	switch {
	case errors.As(err, &inactive) && !inactive.RotatedAt.IsZero():
		return fmt.Sprintf("The refresh token was already used: it was rotated at %s, and the refresh token that "+
			"exchange returned replaces it. A rotated token used again may have been stolen, so every token of this "+
			"grant is now revoked; the user must sign in again.", inactive.RotatedAt.UTC().Format(time.RFC3339))
	case inactive != nil:
		return "The refresh token was revoked: by a revocation request, or with every token of its grant after a " +
			"reused code or refresh token was detected. The user must sign in again."
	case rfc.HintField == fositeRefreshUsed || errors.Is(err, fosite.ErrInactiveToken):
		return "The refresh token is no longer valid: it was either rotated (the refresh token its exchange returned " +
			"replaces it) or revoked. Every token of this grant is now revoked, since a reused refresh token may have " +
			"been stolen; the user must sign in again."
	}
	return ""
}

func (h *Handler) codeHistory(ctx context.Context, code string) (storage.CodeHistory, bool) {
	th, ok := h.store.(tokenHistory)
	if !ok {
		return storage.CodeHistory{}, false
	}
	hist, err := th.CodeHistory(ctx, h.strategy.AuthorizeCodeSignature(ctx, code))
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			h.log.Warn("token error: looking up the code", "request_id", requestID(ctx), "err", err)
		}
		return hist, false
	}
	return hist, true
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return clip(s)
}
