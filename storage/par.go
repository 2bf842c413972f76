package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// Pushed authorization requests (RFC 9126). fosite's PAR handler stores a
// validated request under its request_uri (CreatePARSession). The
// authorize endpoint then resolves the URI with ClaimPAR, which binds it to
// the browser that first used it, and spends it with ConsumePAR in the
// transaction that issues the code. Rows are keyed by the SHA-256 of the
// URI: the table never holds a usable one.

var _ fosite.PARStorage = (*Store)(nil)

// CreatePARSession stores a pushed request until the expiry fosite set on
// its session (fosite.PushedAuthorizeRequestContext). Only the client and
// the form are kept: the authorize endpoint validates the form again, as
// it would any request, with the client as it is then.
func (s *Store) CreatePARSession(ctx context.Context, requestURI string, r fosite.AuthorizeRequester) error {
	if r.GetClient() == nil || r.GetSession() == nil {
		return errors.New("create pushed request: request has no client or session")
	}
	expiresAt := r.GetSession().GetExpiresAt(fosite.PushedAuthorizeRequestContext)
	if expiresAt.IsZero() {
		return errors.New("create pushed request: no expiry set")
	}
	form, err := json.Marshal(formOrEmpty(r.GetRequestForm()))
	if err != nil {
		return fmt.Errorf("create pushed request: encode form: %w", err)
	}
	_, err = s.db(ctx).Exec(ctx, `
		INSERT INTO pushed_authorization_requests (id_hash, client_id, form, requested_at, expires_at)
		VALUES ($1, $2, $3::jsonb, $4, $5)`,
		hashKey(requestURI), r.GetClient().GetID(), string(form), s.now().UTC(), expiresAt.UTC())
	return translate("create pushed request", err)
}

// GetPARSession returns the pushed request stored under requestURI while it
// is unexpired and not yet bound to a browser. Only fosite's own resolution
// of a request_uri calls it; the authorize endpoint uses ClaimPAR.
func (s *Store) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	var (
		clientID    string
		raw         []byte
		requestedAt time.Time
	)
	err := s.db(ctx).QueryRow(ctx, `
		SELECT client_id, form, requested_at FROM pushed_authorization_requests
		WHERE id_hash = $1 AND expires_at > $2 AND browser_hash IS NULL`,
		hashKey(requestURI), s.now().UTC()).Scan(&clientID, &raw, &requestedAt)
	if err != nil {
		return nil, translate("get pushed request", err)
	}
	form, err := decodePARForm(raw)
	if err != nil {
		return nil, fmt.Errorf("get pushed request: %w", err)
	}
	client, err := s.GetClient(ctx, clientID)
	if err != nil {
		return nil, fmt.Errorf("get pushed request: %w", err)
	}
	ar := fosite.NewAuthorizeRequest()
	ar.Client = client
	ar.Form = form
	ar.RequestedAt = requestedAt.UTC()
	return ar, nil
}

// DeletePARSession deletes a pushed request; one already gone is
// fosite.ErrNotFound.
func (s *Store) DeletePARSession(ctx context.Context, requestURI string) error {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM pushed_authorization_requests WHERE id_hash = $1`, hashKey(requestURI))
	if err != nil {
		return translate("delete pushed request", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete pushed request: %w", fosite.ErrNotFound)
	}
	return nil
}

// ClaimPAR resolves a pushed request for client clientID in the browser
// whose CSRF cookie is browser, and returns its form. The first claim
// binds the request to that browser and extends its life to holdUntil, so
// the person has time to sign in and consent; later claims succeed only
// from the same browser. One conditional UPDATE decides, so of two
// browsers racing for one request_uri exactly one wins. An unknown,
// expired, spent request, one bound to another browser or pushed by
// another client is ErrNotFound.
func (s *Store) ClaimPAR(ctx context.Context, requestURI, clientID, browser string, holdUntil time.Time) (url.Values, error) {
	var raw []byte
	err := s.db(ctx).QueryRow(ctx, `
		UPDATE pushed_authorization_requests
		SET browser_hash = $3,
		    expires_at = CASE WHEN browser_hash IS NULL THEN $5 ELSE expires_at END
		WHERE id_hash = $1 AND client_id = $2 AND expires_at > $4
		  AND (browser_hash IS NULL OR browser_hash = $3)
		RETURNING form`,
		hashKey(requestURI), clientID, hashKey(browser), s.now().UTC(), holdUntil.UTC()).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claim pushed request: %w", ErrNotFound)
	}
	if err != nil {
		return nil, translate("claim pushed request", err)
	}
	form, err := decodePARForm(raw)
	if err != nil {
		return nil, fmt.Errorf("claim pushed request: %w", err)
	}
	return form, nil
}

// ConsumePAR spends a pushed request claimed by browser (ClaimPAR): run it
// in the transaction that issues the code, so one pushed request yields
// one code at most. A request already spent, expired or bound to another
// browser is ErrNotFound.
func (s *Store) ConsumePAR(ctx context.Context, requestURI, browser string) error {
	tag, err := s.db(ctx).Exec(ctx, `
		DELETE FROM pushed_authorization_requests
		WHERE id_hash = $1 AND browser_hash = $2 AND expires_at > $3`,
		hashKey(requestURI), hashKey(browser), s.now().UTC())
	if err != nil {
		return translate("consume pushed request", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("consume pushed request: %w", ErrNotFound)
	}
	return nil
}

func decodePARForm(raw []byte) (url.Values, error) {
	form := url.Values{}
	if err := json.Unmarshal(raw, &form); err != nil {
		return nil, fmt.Errorf("decode form: %w", err)
	}
	return form, nil
}
