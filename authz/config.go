package authz

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	josev4 "github.com/go-jose/go-jose/v4"
)

// Config is the server's configuration. ConfigFromEnv reads it from the
// environment; the CLI may override fields from flags; Validate checks it
// before anything starts.
type Config struct {
	// Issuer is the public base URL, e.g. https://login.example.com. Every
	// endpoint lives under it and cookies are Secure when it is https.
	Issuer string
	// Listen is the address the HTTP server binds.
	Listen string
	// Secrets are the system secrets: the first signs, all verify, so a new
	// one can be put first and the old kept until its tokens have expired.
	Secrets [][]byte

	AuthorizeCodeLifespan time.Duration
	AccessTokenLifespan   time.Duration
	RefreshTokenLifespan  time.Duration
	IDTokenLifespan       time.Duration
	// LoginSessionLifespan is how long a user stays signed in.
	LoginSessionLifespan time.Duration
	// ConsentLifespan is how long a remembered consent lasts; 0 keeps it
	// until withdrawn.
	ConsentLifespan time.Duration
	// DeviceCodeLifespan is how long a device authorization request
	// (RFC 8628) waits for the person; 0 means DefaultDeviceCodeLifespan.
	DeviceCodeLifespan time.Duration

	// AllowPlainPKCE accepts the "plain" PKCE method. Off: S256 only.
	AllowPlainPKCE bool
	// RequirePAR refuses every authorize request that does not come
	// through POST /oauth2/par (RFC 9126 6), whatever the client registered.
	RequirePAR bool
	// PARLifespan is how long a pushed request's request_uri may wait for
	// its first use; 0 means DefaultPARLifespan.
	PARLifespan time.Duration
	// TemplatesDir, when set, replaces the embedded pages with a copy on disk.
	TemplatesDir string
	// BrandName is the product name every page shows (title, header,
	// "Sign out of <BrandName>"); "" means DefaultBrandName.
	BrandName string
	// BrandLogoURL is the logo in the pages' header: an https URL, or a
	// path under /static/ naming a file of the templates' static directory.
	// "" shows the built-in mark.
	BrandLogoURL string
	// SupportURL, when set, is linked from every page's footer: an https
	// URL or a mailto: address.
	SupportURL string
	// Debug sends error debug details to clients. Never in production.
	Debug bool
	// Dev is set by `authz dev`: error pages then show the developer the
	// precise reason a request was refused, which production pages keep
	// for the log (it can echo what the request said).
	Dev bool
	// DevHome is what the home page shows a developer under `authz dev`:
	// the demo user, clients and sign-in URL. Nil outside dev mode.
	DevHome *DevHome

	// AdminListen is the admin API's address; "off" disables it. The
	// default, 127.0.0.1:8081, keeps it off the network.
	AdminListen string
	// AdminToken is the bearer token the admin API requires.
	AdminToken string
	// AdminWithoutToken lets the admin API run without a token. Only dev
	// mode sets it, and only for a loopback address.
	AdminWithoutToken bool
	// MetricsListen is where Prometheus scrapes /metrics, without a token:
	// "" (the default) or the admin API's address serves it on the admin
	// listener; another address gets a listener of its own (for a
	// Prometheus on another host, without exposing the admin API);
	// "off" disables it.
	MetricsListen string
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener, behind the admin token, for profiling in production.
	Pprof bool

	// Registration is the dynamic client registration policy: "off" (no
	// endpoint), "token" (an initial access token is required) or "open".
	Registration string
	// RegistrationTokens are the initial access tokens "token" accepts.
	RegistrationTokens []string
	// RegistrationScopes are the scopes a client may register for itself.
	RegistrationScopes []string
	// RegistrationJWTAccessTokens lets a self-registered client ask for
	// JWT access tokens (access_token_strategy "jwt"), which a resource
	// server may accept without asking this server, and so without seeing
	// a revocation, until they expire.
	RegistrationJWTAccessTokens bool
	// RegistrationImplicit lets a self-registered client register for the
	// implicit flow (grant type implicit), which RFC 9700 deprecates.
	RegistrationImplicit bool
	// RegistrationDevice lets a self-registered client register for the
	// device flow, whose confirmation page shows the client's own name
	// to people following a link it may have sent them.
	RegistrationDevice bool
	// SoftwareStatementKeys verify software statements (RFC 7591 2.3) in
	// registration and the admin API; nil: statements are refused. Read
	// at start from the JWKS file AUTHZ_SOFTWARE_STATEMENT_KEYS names.
	SoftwareStatementKeys *josev4.JSONWebKeySet

	// ClientSecretGrace is how long a client's previous secret keeps working
	// after a rotation, unless the rotation asks otherwise.
	ClientSecretGrace time.Duration
	// HTTPClient fetches clients' jwks_uri. Nil: a client with a 5 s
	// timeout that connects only to public addresses.
	HTTPClient *http.Client
	// JWKSPrivateNetworks lets that default client fetch a jwks_uri on a
	// loopback or private address. Off: a client could make the server
	// probe its own network.
	JWKSPrivateNetworks bool
	// ClientIDMetadata lets a client_id be an https URL that serves the
	// client's metadata (Client ID Metadata Documents, authz/cimd.go),
	// fetched like a jwks_uri, with the same HTTP client and rules.
	ClientIDMetadata bool

	// RequestTimeout bounds each request's database work: a database that
	// is down or stalled gives a prompt 503, never a hang, and a
	// transaction that could not commit in time rolls back. It must stay
	// below the HTTP server's write timeout.
	RequestTimeout time.Duration
	// RefreshReuseWindow is how long after a refresh token was rotated a
	// second use of it counts as two tabs refreshing at once: refused with
	// invalid_grant, the family spared. After it, reuse revokes the family.
	// 0 is strict RFC 9700 4.14.2: every reuse revokes.
	RefreshReuseWindow time.Duration

	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client. A request from any other peer is taken to come from the
	// peer itself, whatever it claims: per-address throttling would
	// otherwise trust an attacker's word for its address.
	TrustedProxies []netip.Prefix

	// Now is the clock; tests move it. Nil means time.Now.
	Now func() time.Time
}

// Registration policies.
const (
	RegistrationOff   = "off"
	RegistrationToken = "token"
	RegistrationOpen  = "open"
)

// DefaultBrandName is the product name the pages show unless
// AUTHZ_BRAND_NAME says otherwise.
const DefaultBrandName = "authz"

// MaxBrandNameLength is the longest AUTHZ_BRAND_NAME, in characters: it
// sits in every page's header.
const MaxBrandNameLength = 60

// DefaultAdminListen keeps the admin API on this machine.
const DefaultAdminListen = "127.0.0.1:8081"

// Defaults for the lifespans.
const (
	DefaultAuthorizeCodeLifespan = 10 * time.Minute
	DefaultDeviceCodeLifespan    = 10 * time.Minute
	DefaultAccessTokenLifespan   = time.Hour
	DefaultRefreshTokenLifespan  = 30 * 24 * time.Hour
	DefaultIDTokenLifespan       = time.Hour
	DefaultLoginSessionLifespan  = 24 * time.Hour
	DefaultClientSecretGrace     = 24 * time.Hour
	DefaultRequestTimeout        = 5 * time.Second
	DefaultRefreshReuseWindow    = 2 * time.Second
	DefaultPARLifespan           = time.Minute
)

// MaxRequestTimeout is the longest RequestTimeout accepted: the HTTP
// server's write timeout is longer, so a request that gives up can still
// send its 503.
const MaxRequestTimeout = 25 * time.Second

// MinSecretLength is the shortest system secret accepted, in bytes.
const MinSecretLength = 32

// ConfigFromEnv reads AUTHZ_* variables through getenv (os.Getenv in
// production). Unset variables get defaults; malformed ones are errors.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Issuer:                getenv("AUTHZ_ISSUER"),
		Listen:                getenv("AUTHZ_LISTEN"),
		TemplatesDir:          getenv("AUTHZ_TEMPLATES_DIR"),
		BrandName:             DefaultBrandName,
		BrandLogoURL:          strings.TrimSpace(getenv("AUTHZ_BRAND_LOGO_URL")),
		SupportURL:            strings.TrimSpace(getenv("AUTHZ_SUPPORT_URL")),
		AuthorizeCodeLifespan: DefaultAuthorizeCodeLifespan,
		AccessTokenLifespan:   DefaultAccessTokenLifespan,
		RefreshTokenLifespan:  DefaultRefreshTokenLifespan,
		IDTokenLifespan:       DefaultIDTokenLifespan,
		LoginSessionLifespan:  DefaultLoginSessionLifespan,
		AdminListen:           getenv("AUTHZ_ADMIN_LISTEN"),
		AdminToken:            getenv("AUTHZ_ADMIN_TOKEN"),
		MetricsListen:         strings.TrimSpace(getenv("AUTHZ_METRICS_LISTEN")),
		Registration:          strings.ToLower(strings.TrimSpace(getenv("AUTHZ_REGISTRATION"))),
		RegistrationScopes:    strings.Fields(DefaultClientScope),
		ClientSecretGrace:     DefaultClientSecretGrace,
		RequestTimeout:        DefaultRequestTimeout,
		RefreshReuseWindow:    DefaultRefreshReuseWindow,
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	if v := getenv("AUTHZ_BRAND_NAME"); v != "" {
		if c.BrandName = strings.TrimSpace(v); c.BrandName == "" {
			return c, errors.New("AUTHZ_BRAND_NAME is blank: leave it unset for the default, " + DefaultBrandName + ", or give your product's name")
		}
	}
	if c.Registration == "" {
		c.Registration = RegistrationOff
	}
	if v := getenv("AUTHZ_REGISTRATION_TOKENS"); v != "" {
		for _, t := range strings.Split(v, ",") {
			c.RegistrationTokens = append(c.RegistrationTokens, strings.TrimSpace(t))
		}
	}
	if v := getenv("AUTHZ_REGISTRATION_SCOPES"); v != "" {
		c.RegistrationScopes = strings.Fields(strings.ReplaceAll(v, ",", " "))
	}
	if v := strings.TrimSpace(getenv("AUTHZ_SOFTWARE_STATEMENT_KEYS")); v != "" {
		keys, err := LoadSoftwareStatementKeys(v)
		if err != nil {
			return c, err
		}
		c.SoftwareStatementKeys = keys
	}
	if v := getenv("AUTHZ_TRUSTED_PROXIES"); v != "" {
		proxies, err := ParseTrustedProxies(v)
		if err != nil {
			return c, err
		}
		c.TrustedProxies = proxies
	}
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.Issuer == "" {
		c.Issuer = "http://localhost:8080"
	}
	if s := getenv("AUTHZ_SECRETS"); s != "" {
		secrets, err := ParseSecrets(s)
		if err != nil {
			return c, err
		}
		c.Secrets = secrets
	}
	durations := []struct {
		name string
		dst  *time.Duration
	}{
		{"AUTHZ_CODE_LIFESPAN", &c.AuthorizeCodeLifespan},
		{"AUTHZ_ACCESS_TOKEN_LIFESPAN", &c.AccessTokenLifespan},
		{"AUTHZ_REFRESH_TOKEN_LIFESPAN", &c.RefreshTokenLifespan},
		{"AUTHZ_ID_TOKEN_LIFESPAN", &c.IDTokenLifespan},
		{"AUTHZ_LOGIN_SESSION_LIFESPAN", &c.LoginSessionLifespan},
		{"AUTHZ_CONSENT_LIFESPAN", &c.ConsentLifespan},
		{"AUTHZ_DEVICE_CODE_LIFESPAN", &c.DeviceCodeLifespan},
		{"AUTHZ_CLIENT_SECRET_GRACE", &c.ClientSecretGrace},
		{"AUTHZ_REQUEST_TIMEOUT", &c.RequestTimeout},
		{"AUTHZ_REFRESH_REUSE_WINDOW", &c.RefreshReuseWindow},
		{"AUTHZ_PAR_LIFESPAN", &c.PARLifespan},
	}
	for _, d := range durations {
		v := getenv(d.name)
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("%s: %q is not a duration like 10m or 720h", d.name, v)
		}
		*d.dst = parsed
	}
	bools := []struct {
		name string
		dst  *bool
	}{
		{"AUTHZ_ALLOW_PLAIN_PKCE", &c.AllowPlainPKCE},
		{"AUTHZ_DEBUG", &c.Debug},
		{"AUTHZ_JWKS_PRIVATE_NETWORKS", &c.JWKSPrivateNetworks},
		{"AUTHZ_CLIENT_ID_METADATA", &c.ClientIDMetadata},
		{"AUTHZ_PPROF", &c.Pprof},
		{"AUTHZ_REGISTRATION_JWT_ACCESS_TOKENS", &c.RegistrationJWTAccessTokens},
		{"AUTHZ_REGISTRATION_IMPLICIT", &c.RegistrationImplicit},
		{"AUTHZ_REGISTRATION_DEVICE", &c.RegistrationDevice},
		{"AUTHZ_REQUIRE_PAR", &c.RequirePAR},
	}
	for _, b := range bools {
		v := getenv(b.name)
		if v == "" {
			continue
		}
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s: %q is not true or false", b.name, v)
		}
		*b.dst = parsed
	}
	return c, nil
}

// ParseTrustedProxies parses AUTHZ_TRUSTED_PROXIES: comma-separated CIDRs
// (10.0.0.0/8, fd00::/8); a bare address stands for itself alone.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("AUTHZ_TRUSTED_PROXIES: %q is not a CIDR like 10.0.0.0/8 or fd00::/8, nor an IP address", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		// Peers are compared unmapped: ::ffff:10.0.0.1 is 10.0.0.1.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseSecrets splits a comma-separated list of system secrets.
func ParseSecrets(s string) ([][]byte, error) {
	var out [][]byte
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if len(part) < MinSecretLength {
			return nil, fmt.Errorf("AUTHZ_SECRETS: secret %d is %d bytes; each must be at least %d (generate one with: openssl rand -base64 48)", i+1, len(part), MinSecretLength)
		}
		out = append(out, []byte(part))
	}
	return out, nil
}

// Validate reports the first problem that would keep the server from
// running correctly.
func (c *Config) Validate() error {
	if len(c.Secrets) == 0 {
		return errors.New("AUTHZ_SECRETS is not set: give at least one secret of 32 or more bytes (generate one with: openssl rand -base64 48)")
	}
	for i, s := range c.Secrets {
		if len(s) < MinSecretLength {
			return fmt.Errorf("AUTHZ_SECRETS: secret %d is %d bytes; each must be at least %d", i+1, len(s), MinSecretLength)
		}
		// fosite keys its HMAC with the first 32 bytes only, so two secrets
		// alike there are one secret, and "rotating" to it changes nothing.
		for j := range i {
			if string(c.Secrets[j][:MinSecretLength]) == string(s[:MinSecretLength]) {
				return fmt.Errorf("AUTHZ_SECRETS: secrets %d and %d share their first %d bytes, which are the part that signs; use independent random secrets", j+1, i+1, MinSecretLength)
			}
		}
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("AUTHZ_ISSUER %q must be an absolute http(s) URL without query or fragment", c.Issuer)
	}
	if strings.HasSuffix(c.Issuer, "/") {
		return fmt.Errorf("AUTHZ_ISSUER %q must not end with a slash", c.Issuer)
	}
	if c.AuthorizeCodeLifespan <= 0 || c.AuthorizeCodeLifespan > 10*time.Minute {
		return fmt.Errorf("AUTHZ_CODE_LIFESPAN %s must be positive and at most 10m (RFC 6749 4.1.2)", c.AuthorizeCodeLifespan)
	}
	if c.AccessTokenLifespan <= 0 {
		return fmt.Errorf("AUTHZ_ACCESS_TOKEN_LIFESPAN %s must be positive", c.AccessTokenLifespan)
	}
	if c.DeviceCodeLifespan < 0 || c.DeviceCodeLifespan > time.Hour {
		return fmt.Errorf("AUTHZ_DEVICE_CODE_LIFESPAN %s must be positive and at most 1h", c.DeviceCodeLifespan)
	}
	if c.RefreshTokenLifespan <= 0 {
		return fmt.Errorf("AUTHZ_REFRESH_TOKEN_LIFESPAN %s must be positive", c.RefreshTokenLifespan)
	}
	if c.IDTokenLifespan <= 0 {
		return fmt.Errorf("AUTHZ_ID_TOKEN_LIFESPAN %s must be positive", c.IDTokenLifespan)
	}
	if c.LoginSessionLifespan <= 0 {
		return fmt.Errorf("AUTHZ_LOGIN_SESSION_LIFESPAN %s must be positive", c.LoginSessionLifespan)
	}
	if c.ConsentLifespan < 0 {
		return fmt.Errorf("AUTHZ_CONSENT_LIFESPAN %s must not be negative", c.ConsentLifespan)
	}
	if c.ClientSecretGrace < 0 {
		return fmt.Errorf("AUTHZ_CLIENT_SECRET_GRACE %s must not be negative", c.ClientSecretGrace)
	}
	if c.RequestTimeout <= 0 || c.RequestTimeout > MaxRequestTimeout {
		return fmt.Errorf("AUTHZ_REQUEST_TIMEOUT %s must be positive and at most %s", c.RequestTimeout, MaxRequestTimeout)
	}
	if c.RefreshReuseWindow < 0 || c.RefreshReuseWindow > time.Minute {
		return fmt.Errorf("AUTHZ_REFRESH_REUSE_WINDOW %s must be between 0 (strict) and 1m", c.RefreshReuseWindow)
	}
	if c.PARLifespan != 0 && (c.PARLifespan < 10*time.Second || c.PARLifespan > 10*time.Minute) {
		return fmt.Errorf("AUTHZ_PAR_LIFESPAN %s must be between 10s and 10m (RFC 9126 2.2: short-lived)", c.PARLifespan)
	}
	if c.AdminToken != "" && len(c.AdminToken) < MinSecretLength {
		return fmt.Errorf("AUTHZ_ADMIN_TOKEN is %d bytes; it must be at least %d (generate one with: openssl rand -base64 48)", len(c.AdminToken), MinSecretLength)
	}
	switch c.Registration {
	case "", RegistrationOff, RegistrationOpen:
	case RegistrationToken:
		if len(c.RegistrationTokens) == 0 {
			return errors.New("AUTHZ_REGISTRATION=token needs AUTHZ_REGISTRATION_TOKENS: one or more initial access tokens, comma-separated (generate one with: openssl rand -base64 48)")
		}
	default:
		return fmt.Errorf("AUTHZ_REGISTRATION %q must be off, token or open", c.Registration)
	}
	for i, t := range c.RegistrationTokens {
		if len(t) < MinSecretLength {
			return fmt.Errorf("AUTHZ_REGISTRATION_TOKENS: token %d is %d bytes; each must be at least %d", i+1, len(t), MinSecretLength)
		}
	}
	for _, s := range c.RegistrationScopes {
		if !validScopeToken(s) {
			return fmt.Errorf("AUTHZ_REGISTRATION_SCOPES: %q is not a valid scope", s)
		}
	}
	return c.validateBrand()
}

// validateBrand checks the branding settings; a bad one would otherwise
// show on every page.
func (c *Config) validateBrand() error {
	if !utf8.ValidString(c.BrandName) || utf8.RuneCountInString(c.BrandName) > MaxBrandNameLength ||
		strings.ContainsFunc(c.BrandName, unicode.IsControl) {
		return fmt.Errorf("AUTHZ_BRAND_NAME %q must be at most %d characters, without control characters", c.BrandName, MaxBrandNameLength)
	}
	if c.BrandLogoURL != "" && !brandStaticPath(c.BrandLogoURL) && !brandHTTPSURL(c.BrandLogoURL) {
		return fmt.Errorf("AUTHZ_BRAND_LOGO_URL %q must be an absolute https URL or a path under /static/ "+
			"(a file of the templates' static directory, e.g. /static/logo.svg)", c.BrandLogoURL)
	}
	if c.SupportURL != "" && !brandHTTPSURL(c.SupportURL) && !brandMailto(c.SupportURL) {
		return fmt.Errorf("AUTHZ_SUPPORT_URL %q must be an absolute https URL or a mailto: address", c.SupportURL)
	}
	return nil
}

// brandHTTPSURL reports whether s is an absolute https URL with a host,
// no credentials and no fragment.
func brandHTTPSURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.Fragment == "" &&
		!strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// brandStaticPath reports whether s is a clean path to a file under
// /static/, with nothing a URL would read differently.
func brandStaticPath(s string) bool {
	name, ok := strings.CutPrefix(s, "/static/")
	return ok && name != "" && path.Clean(s) == s && !strings.HasPrefix(name, ".") &&
		!strings.ContainsAny(s, "?#%\\") && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// brandMailto reports whether s is mailto: and one address.
func brandMailto(s string) bool {
	addr, ok := strings.CutPrefix(s, "mailto:")
	if !ok || strings.ContainsAny(addr, "?,") {
		return false
	}
	a, err := mail.ParseAddress(addr)
	return err == nil && a.Name == "" && a.Address == addr
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// MetricsOff reports whether /metrics is served nowhere.
func (c *Config) MetricsOff() bool { return strings.EqualFold(c.MetricsListen, "off") }

// MetricsOnAdmin reports whether the admin listener serves /metrics.
func (c *Config) MetricsOnAdmin() bool {
	return c.MetricsListen == "" || c.MetricsListen == c.AdminListen
}

func (c *Config) secureCookies() bool { return strings.HasPrefix(c.Issuer, "https://") }

// parLifespan is how long a request_uri may wait for its first use.
func (c *Config) parLifespan() time.Duration {
	if c.PARLifespan == 0 {
		return DefaultPARLifespan
	}
	return c.PARLifespan
}
