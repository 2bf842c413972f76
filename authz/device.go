package authz

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// The device authorization grant (RFC 8628): a device that cannot show a
// browser asks POST /oauth2/device/auth for a device code and a user
// code; the person opens /device on another screen, enters the user code,
// signs in, checks what the device asks for and approves; meanwhile the
// device polls the token endpoint (device_grant.go).

const (
	// deviceInterval is the least time between two polls of one device
	// code (RFC 8628 3.2), until slow_down lengthens it.
	deviceInterval = 5 * time.Second
	// userCodeAlphabet has no vowels (no words) and no look-alikes (no
	// 0/O, 1/I/L, 2/Z... pairs within it): 20^8 codes, about 34.6 bits.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLength   = 8
)

// deviceCodePolicy limits wrong user codes from one client address, as
// accountPolicy limits passwords: five free, then growing delays, and a
// 15 minute lock after twenty. A guesser gets 20 tries per quarter hour
// at a space of 2.5e10 codes.
var deviceCodePolicy = storage.ThrottlePolicy{
	Window: 15 * time.Minute, FreeFailures: 5, BaseDelay: time.Second, MaxDelay: time.Minute,
	LockAfter: 20, LockFor: 15 * time.Minute,
}

// deviceStore is what the device endpoints need of storage beyond Store.
type deviceStore interface {
	CreateDeviceCode(ctx context.Context, d *storage.DeviceCode) error
	DeviceCodeByUserCode(ctx context.Context, userCode string) (*storage.DeviceCode, error)
	DecideDeviceCode(ctx context.Context, signature, status, subject string, authTime time.Time) error
}

func (h *Handler) devices() deviceStore { return h.store.(deviceStore) }

func (c *Config) deviceCodeLifespan() time.Duration {
	if c.DeviceCodeLifespan > 0 {
		return c.DeviceCodeLifespan
	}
	return DefaultDeviceCodeLifespan
}

// deviceAuthResponse is RFC 8628 3.2's answer.
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// deviceAuthorization serves POST /oauth2/device/auth (RFC 8628 3.1). The
// client authenticates as at the token endpoint (a public client names
// itself with client_id), must be registered for the device grant, and may
// ask for its own scopes and resources only.
func (h *Handler) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.writeAccessError(ctx, w, nil, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	form := r.PostForm
	if dup := duplicateParameter(form); dup != "" {
		h.writeAccessError(ctx, w, nil, errDuplicate(dup))
		return
	}
	if err := h.prefetchClientKeys(ctx, form); err != nil {
		h.writeAccessError(ctx, w, nil, err)
		return
	}
	client, err := h.provider.AuthenticateClient(ctx, r, form)
	if err != nil {
		h.writeAccessError(ctx, w, nil, err)
		return
	}
	d, err := h.deviceRequest(ctx, client, form)
	if err != nil {
		h.writeAccessError(ctx, w, nil, err)
		return
	}
	out, err := h.issueDeviceCode(ctx, d)
	if err != nil {
		h.writeAccessError(ctx, w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(out)
}

// deviceRequest checks what client asks for, as the authorize endpoint
// would: the grant, its registered scopes, and its resources.
func (h *Handler) deviceRequest(ctx context.Context, client fosite.Client, form url.Values) (*storage.DeviceCode, error) {
	if !client.GetGrantTypes().Has(deviceCodeGrant) {
		return nil, fosite.ErrUnauthorizedClient.WithHintf("The client is not registered for the grant type %s.", deviceCodeGrant)
	}
	scopes := fosite.RemoveEmpty(strings.Split(form.Get("scope"), " "))
	match := h.provider.Config.GetScopeStrategy(ctx)
	for _, s := range scopes {
		if !match(client.GetScopes(), s) {
			return nil, fosite.ErrInvalidScope.WithHintf("The client is not allowed to request scope %q.", s)
		}
	}
	audience := fosite.GetAudiences(form)
	if err := h.provider.Config.GetAudienceStrategy(ctx)(client.GetAudience(), audience); err != nil {
		return nil, err
	}
	resources, err := requestedResources(form)
	if err != nil {
		return nil, err
	}
	if err := checkResources(client, resources); err != nil {
		return nil, err
	}
	return &storage.DeviceCode{
		ClientID:          client.GetID(),
		RequestedScopes:   appendNew(nil, scopes...),
		RequestedAudience: appendNew(audience, resources...),
		IntervalSeconds:   int(deviceInterval / time.Second),
		ExpiresAt:         h.cfg.now().Add(h.cfg.deviceCodeLifespan()),
	}, nil
}

// issueDeviceCode stores d under a new device code and user code. A user
// code already in use is drawn again.
func (h *Handler) issueDeviceCode(ctx context.Context, d *storage.DeviceCode) (*deviceAuthResponse, error) {
	for range 5 {
		code, err := randomToken(32)
		if err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		user, err := newUserCode()
		if err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		d.Signature, d.UserCode = deviceCodeSignature(code), user
		err = h.devices().CreateDeviceCode(ctx, d)
		if errors.Is(err, storage.ErrAlreadyExists) {
			continue
		}
		if err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		shown := formatUserCode(user)
		verify := h.cfg.Issuer + "/device"
		return &deviceAuthResponse{
			DeviceCode:              code,
			UserCode:                shown,
			VerificationURI:         verify,
			VerificationURIComplete: verify + "?" + url.Values{"user_code": {shown}}.Encode(),
			ExpiresIn:               int(h.cfg.deviceCodeLifespan() / time.Second),
			Interval:                d.IntervalSeconds,
		}, nil
	}
	return nil, fosite.ErrServerError.WithDebug("no free user code after 5 draws")
}

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// newUserCode draws userCodeLength characters of userCodeAlphabet,
// uniformly.
func newUserCode() (string, error) {
	var b strings.Builder
	max := big.NewInt(int64(len(userCodeAlphabet)))
	for range userCodeLength {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b.WriteByte(userCodeAlphabet[n.Int64()])
	}
	return b.String(), nil
}

// normalizeUserCode is a user code as stored: what the person typed in
// upper case, without the dash and spaces.
func normalizeUserCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// formatUserCode shows a user code in two halves: BDWP-HQPK.
func formatUserCode(code string) string {
	if len(code) != userCodeLength {
		return code
	}
	return code[:userCodeLength/2] + "-" + code[userCodeLength/2:]
}

// devicePageInput is what a person submitted on the device pages.
type devicePageInput struct {
	action, csrf, username, password, userCode string
}

// device serves GET and POST /device, the verification page: enter the
// code, sign in if needed, confirm the code and what the device asks for,
// approve or deny. Every step carries the code and looks it up again, each
// lookup under the wrong-code throttle.
func (h *Handler) device(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.renderAuthorizeError(w, r, fosite.ErrInvalidRequest, "The form could not be parsed.")
		return
	}
	if r.Method != http.MethodPost {
		switch r.Form.Get("done") {
		case "approved", "denied":
			h.pages.renderDeviceDone(w, http.StatusOK, deviceDonePage{Approved: r.Form.Get("done") == "approved"})
			return
		}
		h.showDeviceCode(w, r, r.Form.Get("user_code"), "", http.StatusOK)
		return
	}
	f := r.PostForm
	in := devicePageInput{f.Get("action"), f.Get("csrf_token"), f.Get("username"), f.Get("password"), normalizeUserCode(f.Get("user_code"))}
	if !h.csrfValid(r, in.csrf) {
		h.pages.renderError(w, http.StatusForbidden, errorPage{
			Title:     "This form has expired",
			Message:   "For your security the form could not be accepted. Open the page again and enter the code from your device.",
			Code:      "invalid_request",
			Reason:    h.devReason(csrfReason),
			RequestID: requestID(r.Context()),
		})
		return
	}
	d, client, ok := h.findDeviceCode(w, r, in.userCode)
	if !ok {
		return
	}
	var (
		user     *storage.User
		authTime time.Time
		err      error
	)
	if in.action == "login" {
		if user, authTime, ok = h.deviceLogin(w, r, client, in); !ok {
			return
		}
	} else if user, authTime, err = h.currentUser(r.Context(), r); err != nil {
		h.devicePageError(w, r, err)
		return
	}
	// The client's default_max_age (OpenID Connect Registration 2) bounds
	// how long ago the person may have signed in, as at /oauth2/authorize.
	if user != nil && client.DefaultMaxAge > 0 && h.cfg.now().Sub(authTime) > time.Duration(client.DefaultMaxAge)*time.Second {
		user = nil
	}
	if user == nil {
		h.showDeviceLogin(w, r, client, in.userCode, in.username, "", http.StatusOK)
		return
	}
	consented := client.SkipConsent
	if !consented {
		if consented, err = h.store.HasConsent(r.Context(), user.ID, client.ID, d.RequestedScopes); err != nil {
			h.devicePageError(w, r, err)
			return
		}
	}
	switch in.action {
	case "allow", "deny":
		h.decideDevice(w, r, d, client, user, authTime, in.action == "allow", consented)
	default:
		h.showDeviceConfirm(w, r, d, client, user, consented)
	}
}

// findDeviceCode looks up the pending request of a user code, counting a
// wrong code against the client address (deviceCodePolicy). On failure it
// has answered with the code page and its reason.
func (h *Handler) findDeviceCode(w http.ResponseWriter, r *http.Request, userCode string) (*storage.DeviceCode, *storage.Client, bool) {
	ctx := r.Context()
	if userCode == "" {
		h.showDeviceCode(w, r, "", deviceErrorText("missing"), http.StatusOK)
		return nil, nil, false
	}
	key := storage.DeviceThrottleKey(addrKey(h.clientAddr(r)))
	at, err := h.store.CountAttempt(ctx, key, deviceCodePolicy)
	if err != nil {
		h.devicePageError(w, r, err)
		return nil, nil, false
	}
	if !at.Admitted {
		h.log.Warn("device code guessing throttled", "addr", h.clientAddr(r).String(), "retry_after", at.RetryAfter)
		setRetryAfter(w.Header(), at.RetryAfter)
		h.showDeviceCode(w, r, formatUserCode(userCode), deviceErrorText("throttled", waitText(at.RetryAfter)), http.StatusTooManyRequests)
		return nil, nil, false
	}
	d, err := h.devices().DeviceCodeByUserCode(ctx, userCode)
	if errors.Is(err, storage.ErrNotFound) {
		h.log.Info("wrong device user code", "addr", h.clientAddr(r).String())
		h.showDeviceCode(w, r, formatUserCode(userCode), deviceErrorText("invalid"), http.StatusOK)
		return nil, nil, false
	}
	if err == nil {
		// A code that exists was not a guess: give the count back.
		err = h.store.UncountAttempt(ctx, key, at.WindowStart)
	}
	if err != nil {
		h.devicePageError(w, r, err)
		return nil, nil, false
	}
	if d.Status != storage.DevicePending {
		h.showDeviceCode(w, r, "", deviceErrorText("used"), http.StatusOK)
		return nil, nil, false
	}
	client, err := h.store.Client(ctx, d.ClientID)
	if err != nil {
		h.devicePageError(w, r, err)
		return nil, nil, false
	}
	return d, client, true
}

// deviceLogin signs the person in with the login page's checks and
// throttles (checkLogin), and starts a login session as the authorize
// flow does. On failure it has answered with the login page again.
func (h *Handler) deviceLogin(w http.ResponseWriter, r *http.Request, client *storage.Client, in devicePageInput) (*storage.User, time.Time, bool) {
	return h.signIn(w, r, client, in.username, in.password,
		func(message string, status int) {
			h.showDeviceLogin(w, r, client, in.userCode, in.username, message, status)
		},
		func(err error) { h.devicePageError(w, r, err) })
}

// decideDevice records the person's answer, with their consent when the
// confirmation page asked for it, and ends on the "return to your device"
// page (after a redirect, so a reload posts nothing again).
func (h *Handler) decideDevice(w http.ResponseWriter, r *http.Request, d *storage.DeviceCode, client *storage.Client, user *storage.User, authTime time.Time, allow, consented bool) {
	status, event, outcome := storage.DeviceDenied, EventConsentDenied, OutcomeDenied
	if allow {
		status, event, outcome = storage.DeviceApproved, EventConsentGranted, OutcomeSuccess
	}
	err := h.store.InTx(r.Context(), func(ctx context.Context) error {
		if err := h.devices().DecideDeviceCode(ctx, d.Signature, status, user.ID, authTime); err != nil {
			return err
		}
		if allow && !consented {
			return h.store.SaveConsent(ctx, user.ID, client.ID, d.RequestedScopes, h.cfg.ConsentLifespan)
		}
		return nil
	})
	if errors.Is(err, storage.ErrDeviceCodeDecided) {
		h.showDeviceCode(w, r, "", deviceErrorText("used"), http.StatusOK)
		return
	}
	if err != nil {
		h.devicePageError(w, r, err)
		return
	}
	audit(r.Context(), AuditEvent{Event: event, Outcome: outcome, ClientID: client.ID, Subject: user.ID,
		Attrs: []slog.Attr{slog.String("scope", strings.Join(d.RequestedScopes, " ")), slog.String("grant", "device_code")}})
	done := "denied"
	if allow {
		done = "approved"
	}
	http.Redirect(w, r, h.base+"/device?done="+done, http.StatusSeeOther)
}

func (h *Handler) showDeviceCode(w http.ResponseWriter, r *http.Request, userCode, message string, status int) {
	h.pages.renderDevice(w, status, devicePage{
		Action:    h.base + "/device",
		CSRFToken: h.csrfToken(w, r),
		Step:      "code",
		UserCode:  userCode,
		Error:     message,
	})
}

func (h *Handler) showDeviceLogin(w http.ResponseWriter, r *http.Request, client *storage.Client, userCode, username, message string, status int) {
	h.pages.renderLogin(w, status, loginPage{
		Action:     h.base + "/device",
		CSRFToken:  h.csrfToken(w, r),
		Hidden:     []hiddenField{{Name: "user_code", Value: formatUserCode(userCode)}},
		ClientName: clientName(client),
		Username:   username,
		Error:      message,
	})
}

func (h *Handler) showDeviceConfirm(w http.ResponseWriter, r *http.Request, d *storage.DeviceCode, client *storage.Client, user *storage.User, consented bool) {
	scopes, err := h.consentScopes(r.Context(), d.RequestedScopes)
	if err != nil {
		h.scopesFailed(w, r, err)
		return
	}
	h.pages.renderDevice(w, http.StatusOK, devicePage{
		Action:     h.base + "/device",
		CSRFToken:  h.csrfToken(w, r),
		Hidden:     []hiddenField{{Name: "user_code", Value: formatUserCode(d.UserCode)}},
		Step:       "confirm",
		UserCode:   formatUserCode(d.UserCode),
		ClientName: clientName(client),
		ClientURI:  client.ClientURI,
		LogoURI:    client.LogoURI,
		Username:   user.Username,
		Scopes:     scopes,
		Consented:  consented,
	})
}

// devicePageError answers a server-side failure on the device pages.
func (h *Handler) devicePageError(w http.ResponseWriter, r *http.Request, err error) {
	rfc := fosite.ErrorToRFC6749Error(fosite.ErrServerError.WithWrap(err))
	failed(r.Context(), rfc)
	h.renderAuthorizeError(w, r, rfc, describeError(rfc).Error())
}
