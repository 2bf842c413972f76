package devserver

import (
	"fmt"
	"io"
	"strings"

	"github.com/authz/authz/internal/demo/api"
)

// banner is what dev prints once it serves.
type banner struct {
	issuer      string
	data        string // what is kept where
	ownCluster  bool
	databaseURL string // the own cluster's, for other tools
	dataDir     string
	creds       *demoCredentials
	bffOrigin   string    // the demo-bff client's redirect URIs' origin
	apps        *demoApps // with --demo
	admin       string    // where the admin API is, or why it is not
}

// print tells a newcomer what is running and how to try it.
func (b *banner) print(w io.Writer) {
	bffSecret, apiSecret := b.creds.ClientSecrets[demoBFF], b.creds.ClientSecrets[demoAPI]
	redirect := b.bffOrigin + "/callback"
	password := "password " + b.creds.Password
	if b.creds.passwordUnknown {
		password = "who existed already (her password was not set by authz dev)"
	}
	tryDemo, nothing, what := "", "nothing listens\n   there", "the server"
	if b.apps != nil {
		tryDemo = fmt.Sprintf("\nDemo: open %s and click Get contacts\n      (the BFF calls the contacts API at %s; sign in as %s)\n",
			b.bffOrigin, b.apps.bff.APIURL, demoUsername)
		if b.apps.api.Verify == api.VerifyJWT {
			tryDemo += "      The API verifies JWT access tokens itself against the JWKS (no introspection).\n"
		}
		nothing, what = "the demo BFF\n   there did not start this sign-in", "the demo apps and the server"
	}
	stop := "Ctrl-C stops " + what + "."
	database := ""
	if b.ownCluster {
		what = strings.Replace(what, " and ", ", ", 1)
		stop = "Ctrl-C stops " + what + " and PostgreSQL; the next start keeps everything (delete " + b.dataDir + " to start over)."
		// authz commands run from here find it by themselves (the state
		// file); psql and the rest need the URL.
		database = "  database   authz commands run in this folder use it; for psql and other tools:\n" +
			"             export AUTHZ_DATABASE_URL='" + b.databaseURL + "'\n"
	}
	fmt.Fprintf(w, `
authz dev is running at %[1]s
  discovery  %[1]s/.well-known/openid-configuration
  admin API  %[16]s
  data       %[2]s
%[17]s  user       %[3]s, %[4]s
  clients    %[5]s  secret %[6]s  (confidential BFF; redirect %[7]s)
             %[8]s  public SPA, PKCE S256 required; redirect %[9]s
             %[10]s  secret %[11]s  (resource server: introspection)
             %[18]s  public CLI, device flow
%[14]s
1. Open this URL, sign in as %[3]s and press Allow:
   %[12]s
2. The browser lands on %[7]s?code=...&state=demo (%[15]s: copy the code from the address bar). Exchange it within 10 minutes:
   curl -s -u %[5]s:%[6]s %[1]s/oauth2/token -d grant_type=authorization_code -d redirect_uri=%[7]s -d code=CODE
3. Check the access token as the API would:
   curl -s -u %[10]s:%[11]s %[1]s/oauth2/introspect -d token=ACCESS_TOKEN

Device flow (a CLI signs in on another screen):
   curl -s %[1]s/oauth2/device/auth -d client_id=%[18]s -d scope=openid
   then open verification_uri_complete, sign in and press Allow, and poll:
   curl -s %[1]s/oauth2/token -d client_id=%[18]s -d grant_type=urn:ietf:params:oauth:grant-type:device_code -d device_code=DEVICE_CODE

%[13]s

`, b.issuer, b.data, demoUsername, password, demoBFF, bffSecret, redirect,
		demoSPA, demoRedirectSPA, demoAPI, apiSecret, demoAuthorizeURL(b.issuer, redirect), stop, tryDemo, nothing, b.admin, database, demoCLI)
}
