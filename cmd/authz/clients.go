package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// pageSize is how many rows list commands read per query.
const pageSize = 100

func (c *cli) clientsCreate(ctx context.Context, args []string) error {
	fs := newFlags("clients create")
	dbURL := dbFlag(fs)
	var (
		meta                                authz.ClientMetadata
		redirectURIs, audience, postLogouts stringList
		contacts, acrValues                 stringList
		grantTypes                          = stringList{sep: commas}
		responseTypes                       = stringList{sep: commas}
		scopes                              = stringList{sep: commasOrSpaces}
		public                              bool
	)
	fs.StringVar(&meta.ClientName, "name", "", "client `name` shown to users on the consent page (required)")
	fs.StringVar(&meta.ClientID, "id", "", "client `id` (default: generated)")
	fs.StringVar(&meta.ClientSecret, "secret", "", "client `secret` (default: generated; shown once); visible in ps and shell history, prefer --secret-stdin")
	secretStdin := fs.Bool("secret-stdin", false, "read the client secret from the first line of standard input")
	fs.Var(&redirectURIs, "redirect-uri", "redirect `URI`, absolute and without fragment; repeatable")
	fs.Var(&grantTypes, "grant-type", "grant `type`, repeatable or comma-separated: authorization_code, refresh_token, client_credentials, implicit, urn:ietf:params:oauth:grant-type:device_code (default authorization_code,refresh_token)")
	fs.Var(&responseTypes, "response-type", "response `type`, repeatable or comma-separated: code, or for the implicit grant token, id_token, \"id_token token\" (default code when the authorization_code grant is used)")
	fs.Var(&scopes, "scope", "`scopes` the client may request, separated by spaces or commas; repeatable (default for sign-in clients: \""+authz.DefaultClientScope+"\")")
	fs.StringVar(&meta.TokenEndpointAuthMethod, "auth-method", "", "client authentication `method` at the token endpoint: client_secret_basic (default), client_secret_post, private_key_jwt (the default with --jwks-file or --jwks-uri) or none")
	fs.BoolVar(&public, "public", false, "a public client (SPA, mobile, CLI): no secret, PKCE required; same as --auth-method none")
	fs.Var(&audience, "audience", "`audience` the client's tokens may be issued for; repeatable")
	fs.BoolVar(&meta.SkipConsent, "skip-consent", false, "do not ask users for consent (first-party clients only)")
	fs.BoolVar(&meta.RequirePushedAuthorizationRequests, "require-par", false, "accept the client's authorization requests only through POST /oauth2/par (RFC 9126 pushed authorization requests)")
	fs.Var(&postLogouts, "post-logout-redirect-uri", "post-logout redirect `URI`; repeatable")
	fs.StringVar(&meta.LogoURI, "logo-uri", "", "https `URL` of the app's logo, shown on the consent page")
	fs.StringVar(&meta.ClientURI, "client-uri", "", "https `URL` of the app's home page, linked from the consent page")
	jwksFile := fs.String("jwks-file", "", "`file` holding the JSON Web Key Set (public keys) a private_key_jwt client signs its assertions with")
	fs.StringVar(&meta.JWKSURI, "jwks-uri", "", "https `URL` of the key set a private_key_jwt client signs its assertions with")
	fs.StringVar(&meta.AccessTokenStrategy, "access-token-strategy", "", "`format` of the client's access tokens: opaque (default; checked by introspection) or jwt (RFC 9068; verifiable offline against the JWKS)")
	fs.StringVar(&meta.IDTokenSignedResponseAlg, "id-token-alg", "", "JWS `algorithm` of the client's ID tokens and JWT access tokens: RS256 (default), PS256, ES256 or EdDSA")
	fs.StringVar(&meta.TokenEndpointAuthSigningAlg, "auth-signing-alg", "", "JWS `algorithm` of a private_key_jwt client's assertions, e.g. RS256 or ES256 (default: from the first key, else RS256)")
	fs.StringVar(&meta.ApplicationType, "application-type", "", "`type` of app (OpenID Connect Registration): web (default; https redirect URIs, http only to localhost) or native (private-use schemes like com.example.app:/cb, http to 127.0.0.1, [::1] or localhost on any port, claimed https)")
	fs.StringVar(&meta.TOSURI, "tos-uri", "", "https `URL` of the app's terms of service, linked from the consent page")
	fs.StringVar(&meta.PolicyURI, "policy-uri", "", "https `URL` of the app's privacy policy, linked from the consent page")
	fs.StringVar(&meta.SubjectType, "subject-type", "", "`type` of sub the client sees: public (default) or pairwise (one per sector, OpenID Connect Core 8)")
	fs.StringVar(&meta.SectorIdentifierURI, "sector-identifier-uri", "", "https `URL` of a JSON list of the client's redirect URIs, whose host is its pairwise sector")
	fs.Int64Var(&meta.DefaultMaxAge, "default-max-age", 0, "`seconds` after which a sign-in is too old for the client's requests that give no max_age (0: no limit)")
	fs.BoolVar(&meta.RequireAuthTime, "require-auth-time", false, "always put auth_time in the client's ID tokens")
	fs.StringVar(&meta.UserinfoSignedResponseAlg, "userinfo-alg", "", "JWS `algorithm` to sign the client's userinfo answers with: RS256, PS256, ES256 or EdDSA (default: plain JSON)")
	fs.StringVar(&meta.SoftwareID, "software-id", "", "`id` of the client software, the same for every installation (stored)")
	fs.StringVar(&meta.SoftwareVersion, "software-version", "", "`version` of the client software (stored)")
	fs.Var(&contacts, "contact", "`address` of someone responsible for the client; repeatable (stored)")
	fs.Var(&acrValues, "default-acr-value", "default `acr` value of the client's requests; repeatable (stored, not acted on)")
	fs.StringVar(&meta.InitiateLoginURI, "initiate-login-uri", "", "https `URL` that starts a sign-in at the client (stored)")
	fs.StringVar(&meta.FrontchannelLogoutURI, "frontchannel-logout-uri", "", "https `URL` for front-channel logout (stored, not acted on yet)")
	fs.StringVar(&meta.BackchannelLogoutURI, "backchannel-logout-uri", "", "https `URL` for back-channel logout (stored, not acted on yet)")
	pos, err := c.parse(fs, "--name NAME --redirect-uri URI [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("clients create: unexpected argument %q (run \"authz clients create -h\" for usage)", pos[0])
	}
	if strings.TrimSpace(meta.ClientName) == "" {
		return usagef("clients create: --name is required")
	}
	if *secretStdin {
		if meta.ClientSecret != "" {
			return usagef("clients create: --secret and --secret-stdin cannot go together")
		}
		secret, err := c.readPassword(ctx, "Client secret")
		if err != nil {
			return fmt.Errorf("client secret: %w", err)
		}
		meta.ClientSecret = secret
	}
	if *jwksFile != "" {
		raw, err := os.ReadFile(*jwksFile)
		if err != nil {
			return fmt.Errorf("--jwks-file: %w", err)
		}
		if !json.Valid(raw) {
			return fmt.Errorf("--jwks-file %s: not JSON; want a JSON Web Key Set like {\"keys\": [...]}", *jwksFile)
		}
		meta.JWKS = raw
	}
	if public {
		if isSet(fs, "auth-method") && meta.TokenEndpointAuthMethod != "none" {
			return usagef("clients create: --public means --auth-method none; it cannot go with --auth-method %s", meta.TokenEndpointAuthMethod)
		}
		meta.TokenEndpointAuthMethod = "none"
	} else if meta.TokenEndpointAuthMethod == "" && (len(meta.JWKS) > 0 || meta.JWKSURI != "") {
		// Keys are only for private_key_jwt: asking for them asks for it.
		meta.TokenEndpointAuthMethod = "private_key_jwt"
	}
	meta.Scope = strings.Join(scopes.values, " ")
	meta.RedirectURIs = redirectURIs.values
	meta.GrantTypes = grantTypes.values
	meta.ResponseTypes = responseTypes.values // empty: defaulted from the grant types
	meta.Audience = audience.values
	meta.PostLogoutRedirectURIs = postLogouts.values
	meta.Contacts = contacts.values
	meta.DefaultACRValues = acrValues.values

	// Catch bad metadata before touching the database. CreateClient checks
	// it again.
	check := meta
	check.Normalize()
	if err := check.Validate(); err != nil {
		return err
	}

	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	created, err := authz.CreateClient(ctx, store, meta)
	if errors.Is(err, authz.ErrClientExists) {
		return fmt.Errorf("client %q already exists", meta.ClientID)
	}
	if err != nil {
		return err
	}
	if err := writeJSON(c.stdout, created); err != nil {
		return err
	}
	if created.ClientSecret != "" {
		fmt.Fprintln(c.stderr, "note: this is the only time the client_secret is shown; store it now.")
	}
	return nil
}

func (c *cli) clientsRotateSecret(ctx context.Context, args []string) error {
	fs := newFlags("clients rotate-secret")
	dbURL := dbFlag(fs)
	grace := fs.Duration("grace", 0, "how long the previous secret keeps working, e.g. 1h; 0 ends it at once (default $AUTHZ_CLIENT_SECRET_GRACE, else "+strings.TrimSuffix(strings.TrimSuffix(authz.DefaultClientSecretGrace.String(), "0s"), "0m")+")")
	secretStdin := fs.Bool("secret-stdin", false, "read the new secret from the first line of standard input (default: generated)")
	pos, err := c.parse(fs, "CLIENT_ID [--grace DURATION] [--secret-stdin] [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("clients rotate-secret: expected one client id (usage: authz clients rotate-secret CLIENT_ID)")
	}
	if !isSet(fs, "grace") {
		*grace = authz.DefaultClientSecretGrace
		if v := c.getenv("AUTHZ_CLIENT_SECRET_GRACE"); v != "" {
			if *grace, err = time.ParseDuration(v); err != nil {
				return fmt.Errorf("AUTHZ_CLIENT_SECRET_GRACE: %q is not a duration like 10m or 720h", v)
			}
		}
	}
	if *grace < 0 {
		return usagef("clients rotate-secret: --grace must not be negative")
	}
	var secret string
	if *secretStdin {
		if secret, err = c.readPassword(ctx, "Client secret"); err != nil {
			return fmt.Errorf("client secret: %w", err)
		}
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	rotated, err := authz.RotateClientSecret(ctx, store, pos[0], secret, *grace, time.Now())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("client %q not found", pos[0])
	case errors.Is(err, authz.ErrNoSecret):
		return fmt.Errorf("client %q has no secret to rotate: it does not authenticate with one", pos[0])
	case err != nil:
		return err
	}
	if err := writeJSON(c.stdout, rotated); err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, "note: this is the only time the client_secret is shown; store it now.")
	if rotated.PreviousSecretExpiresAt != nil {
		fmt.Fprintf(c.stderr, "note: the previous secret keeps working until %s.\n",
			time.Unix(*rotated.PreviousSecretExpiresAt, 0).UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintln(c.stderr, "note: the previous secret no longer works.")
	}
	return nil
}

func (c *cli) clientsList(ctx context.Context, args []string) error {
	store, format, closeStore, err := c.openForList(ctx, "clients list", args)
	if err != nil {
		return err
	}
	defer closeStore()
	var all []authz.ClientMetadata
	for after := ""; ; {
		page, err := store.ListClients(ctx, after, pageSize)
		if err != nil {
			return err
		}
		for _, cl := range page {
			all = append(all, authz.ClientMetadataOf(cl))
		}
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	if *format == "json" {
		if all == nil {
			all = []authz.ClientMetadata{}
		}
		return writeJSON(c.stdout, all)
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(c.stderr, "no clients yet; register one with: authz clients create --name NAME --redirect-uri URI")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tAUTH METHOD\tGRANT TYPES\tREDIRECT URIS")
	for _, m := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ClientID, orDash(m.ClientName), m.TokenEndpointAuthMethod,
			orDash(strings.Join(m.GrantTypes, ",")), orDash(strings.Join(m.RedirectURIs, " ")))
	}
	return tw.Flush()
}

func (c *cli) clientsGet(ctx context.Context, args []string) error {
	fs := newFlags("clients get")
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "CLIENT_ID [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("clients get: expected one client id (usage: authz clients get CLIENT_ID)")
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	cl, err := store.Client(ctx, pos[0])
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("client %q not found", pos[0])
	}
	if err != nil {
		return err
	}
	return writeJSON(c.stdout, authz.ClientMetadataOf(cl))
}

func (c *cli) clientsDelete(ctx context.Context, args []string) error {
	fs := newFlags("clients delete")
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "CLIENT_ID [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("clients delete: expected one client id (usage: authz clients delete CLIENT_ID)")
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	err = store.DeleteClient(ctx, pos[0])
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("client %q not found", pos[0])
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "deleted client %s\n", pos[0])
	return err
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
