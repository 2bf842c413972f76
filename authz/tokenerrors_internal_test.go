package authz

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// TestRefreshErrorReason: given storage's word on an inactive refresh
// token, a rotated one and a revoked one get different reasons; without
// it, the reason names both possibilities rather than "already used".
func TestRefreshErrorReason(t *testing.T) {
	rotatedAt := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	fositeErr := func(cause error) error {
		// What fosite's refresh handler returns for an inactive token.
		return fosite.ErrInvalidGrant.WithWrap(cause).WithHint("The refresh token was already used.")
	}
	for _, tc := range []struct {
		name      string
		cause     error
		says, not string
	}{
		{"rotated", &storage.RefreshInactive{RotatedAt: rotatedAt}, "rotated at 2025-03-04T05:06:07Z", "revoked:"},
		{"revoked", &storage.RefreshInactive{}, "The refresh token was revoked", "rotated"},
		{"storage did not say", fosite.ErrInactiveToken, "either rotated", "already used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fositeErr(tc.cause)
			if !errors.Is(tc.cause, fosite.ErrInactiveToken) {
				t.Fatalf("%T is not fosite.ErrInactiveToken to errors.Is: fosite would not revoke the grant", tc.cause)
			}
			got := refreshErrorReason(err, fosite.ErrorToRFC6749Error(err))
			if !strings.Contains(got, tc.says) || strings.Contains(got, tc.not) {
				t.Errorf("reason %q: want it to say %q and not %q", got, tc.says, tc.not)
			}
		})
	}
}
