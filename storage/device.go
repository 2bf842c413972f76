package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Device authorization requests (RFC 8628), one row each in device_codes.
// A row is pending until the person decides on the verification page
// (approved or denied), and an approved one is redeemed once at the token
// endpoint. The device code is stored only as a hash; the user code is
// stored normalised so it can be looked up as typed.

// Device code statuses.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceRedeemed = "redeemed"
)

// ErrDeviceCodeDecided is returned when a device request that was to be
// approved or denied is no longer pending or has expired.
var ErrDeviceCodeDecided = errors.New("device request already decided or expired")

// DeviceCode is one device authorization request.
type DeviceCode struct {
	Signature         string
	UserCode          string
	ClientID          string
	RequestedScopes   []string
	RequestedAudience []string
	Status            string
	Subject           *string
	AuthTime          *time.Time
	DecidedAt         *time.Time
	IntervalSeconds   int
	LastPolledAt      *time.Time
	RequestID         *string
	CreatedAt         time.Time
	ExpiresAt         time.Time
}

const deviceColumns = `signature, user_code, client_id, requested_scopes, requested_audience, status, subject,
	auth_time, decided_at, interval_seconds, last_polled_at, request_id, created_at, expires_at`

// DeviceThrottleKey is the key counting wrong user codes entered from a
// client address.
func DeviceThrottleKey(addr string) string { return "device:" + cleanKey(addr) }

// CreateDeviceCode stores a new pending request. A user code still held
// by a live request is ErrAlreadyExists (the caller draws another); one
// held by an expired request is freed first.
func (s *Store) CreateDeviceCode(ctx context.Context, d *DeviceCode) error {
	now := s.now().UTC()
	if _, err := s.db(ctx).Exec(ctx, `DELETE FROM device_codes WHERE user_code = $1 AND expires_at <= $2`, d.UserCode, now); err != nil {
		return translate("free user code", err)
	}
	_, err := s.db(ctx).Exec(ctx, `
		INSERT INTO device_codes (signature, user_code, client_id, requested_scopes, requested_audience,
			status, interval_seconds, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)`,
		d.Signature, d.UserCode, d.ClientID, nonNil(d.RequestedScopes), nonNil(d.RequestedAudience),
		d.IntervalSeconds, now, d.ExpiresAt.UTC())
	return translate("create device code", err)
}

// DeviceCodeByUserCode returns the live (unexpired) request whose user
// code is userCode (normalised), or ErrNotFound.
func (s *Store) DeviceCodeByUserCode(ctx context.Context, userCode string) (*DeviceCode, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+deviceColumns+` FROM device_codes
		WHERE user_code = $1 AND expires_at > $2`, userCode, s.now().UTC())
	if err != nil {
		return nil, translate("get device code by user code", err)
	}
	d, err := pgx.CollectOneRow(rows, pgx.RowToAddrOfStructByPos[DeviceCode])
	return d, translate("get device code by user code", err)
}

// DeviceCodeForUpdate returns the request whose device code hashes to
// signature, expired or not, locked until ctx's transaction ends, so that
// concurrent polls of one code take turns: exactly one redeems it.
func (s *Store) DeviceCodeForUpdate(ctx context.Context, signature string) (*DeviceCode, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+deviceColumns+` FROM device_codes
		WHERE signature = $1 FOR UPDATE`, signature)
	if err != nil {
		return nil, translate("get device code", err)
	}
	d, err := pgx.CollectOneRow(rows, pgx.RowToAddrOfStructByPos[DeviceCode])
	return d, translate("get device code", err)
}

// DecideDeviceCode approves (status DeviceApproved) or denies
// (DeviceDenied) a pending, unexpired request on behalf of subject, who
// signed in at authTime. A request no longer pending, or expired, is
// ErrDeviceCodeDecided: a decision is made once.
func (s *Store) DecideDeviceCode(ctx context.Context, signature, status, subject string, authTime time.Time) error {
	if status != DeviceApproved && status != DeviceDenied {
		return fmt.Errorf("decide device code: invalid status %q", status)
	}
	now := s.now().UTC()
	var got string
	err := s.db(ctx).QueryRow(ctx, `
		UPDATE device_codes SET status = $2, subject = $3, auth_time = $4, decided_at = $5
		WHERE signature = $1 AND status = 'pending' AND expires_at > $5
		RETURNING signature`, signature, status, subject, authTime.UTC(), now).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrDeviceCodeDecided
	}
	return translate("decide device code", err)
}

// NoteDevicePoll records a poll of a pending request at the store's now
// and sets the interval the device must keep from then on.
func (s *Store) NoteDevicePoll(ctx context.Context, signature string, interval time.Duration) error {
	_, err := s.db(ctx).Exec(ctx, `UPDATE device_codes SET last_polled_at = $2, interval_seconds = $3 WHERE signature = $1`,
		signature, s.now().UTC(), int(interval/time.Second))
	return translate("note device poll", err)
}

// RedeemDeviceCode marks an approved request redeemed by the token
// request requestID. One that is not approved (already redeemed) is
// ErrDeviceCodeDecided.
func (s *Store) RedeemDeviceCode(ctx context.Context, signature, requestID string) error {
	var got string
	err := s.db(ctx).QueryRow(ctx, `
		UPDATE device_codes SET status = 'redeemed', request_id = $2
		WHERE signature = $1 AND status = 'approved'
		RETURNING signature`, signature, requestID).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrDeviceCodeDecided
	}
	return translate("redeem device code", err)
}
