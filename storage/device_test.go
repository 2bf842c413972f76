package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authz/authz/storage"
)

// TestDeviceCodeLifecycle: a pending request is found by its user code,
// decided once, redeemed once; a live user code cannot be handed out
// twice, an expired one can; expired rows are not found by user code and
// the janitor deletes them.
func TestDeviceCodeLifecycle(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	ctx := t.Context()
	if err := s.CreateClient(ctx, &storage.Client{ID: "cli", Public: true, GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"}}); err != nil {
		t.Fatal(err)
	}
	alice := &storage.User{Username: "alice"}
	if err := s.CreateUser(ctx, alice, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	newCode := func(sig, user string) *storage.DeviceCode {
		return &storage.DeviceCode{Signature: sig, UserCode: user, ClientID: "cli", RequestedScopes: []string{"openid"},
			IntervalSeconds: 5, ExpiresAt: clock.Now().Add(10 * time.Minute)}
	}
	if err := s.CreateDeviceCode(ctx, newCode("sig-1", "BCDFGHJK")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDeviceCode(ctx, newCode("sig-2", "BCDFGHJK")); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("a live user code handed out twice: err = %v, want ErrAlreadyExists", err)
	}
	d, err := s.DeviceCodeByUserCode(ctx, "BCDFGHJK")
	if err != nil || d.Signature != "sig-1" || d.Status != storage.DevicePending || d.Subject != nil {
		t.Fatalf("DeviceCodeByUserCode = %+v, %v", d, err)
	}
	if _, err := s.DeviceCodeByUserCode(ctx, "ZZZZZZZZ"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user code: err = %v, want ErrNotFound", err)
	}
	authTime := clock.Now().Add(-time.Minute)
	if err := s.DecideDeviceCode(ctx, "sig-1", storage.DeviceApproved, alice.ID, authTime); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideDeviceCode(ctx, "sig-1", storage.DeviceDenied, alice.ID, authTime); !errors.Is(err, storage.ErrDeviceCodeDecided) {
		t.Fatalf("second decision: err = %v, want ErrDeviceCodeDecided", err)
	}
	err = s.InTx(ctx, func(ctx context.Context) error {
		d, err := s.DeviceCodeForUpdate(ctx, "sig-1")
		if err != nil {
			return err
		}
		if d.Status != storage.DeviceApproved || d.Subject == nil || *d.Subject != alice.ID || !d.AuthTime.Equal(authTime) {
			t.Errorf("approved row = %+v", d)
		}
		return s.RedeemDeviceCode(ctx, "sig-1", "req-1")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RedeemDeviceCode(ctx, "sig-1", "req-2"); !errors.Is(err, storage.ErrDeviceCodeDecided) {
		t.Fatalf("second redemption: err = %v, want ErrDeviceCodeDecided", err)
	}

	clock.Advance(11 * time.Minute)
	if _, err := s.DeviceCodeByUserCode(ctx, "BCDFGHJK"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired user code found: err = %v", err)
	}
	if err := s.DecideDeviceCode(ctx, "sig-1", storage.DeviceApproved, alice.ID, authTime); !errors.Is(err, storage.ErrDeviceCodeDecided) {
		t.Fatalf("decision on an expired request: err = %v", err)
	}
	// The expired holder of the user code gives it up.
	if err := s.CreateDeviceCode(ctx, newCode("sig-3", "BCDFGHJK")); err != nil {
		t.Fatalf("user code of an expired request: %v", err)
	}
	if err := s.CreateDeviceCode(ctx, &storage.DeviceCode{Signature: "sig-4", UserCode: "MNPQRSTV", ClientID: "cli",
		IntervalSeconds: 5, ExpiresAt: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	deleted, err := s.DeleteExpired(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["device_codes"] != 1 {
		t.Errorf("janitor deleted %d device codes, want 1 (sig-4)", deleted["device_codes"])
	}
	if _, err := s.DeviceCodeForUpdate(ctx, "sig-4"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired device code still there: %v", err)
	}
	if d, err := s.DeviceCodeByUserCode(ctx, "BCDFGHJK"); err != nil || d.Signature != "sig-3" {
		t.Errorf("live device code: %+v, %v", d, err)
	}
}
