package authz

import (
	"net/http"
)

// DevHome is what `authz dev` seeded, for the home page to show: the banner
// scrolls away, the page stays one click from the issuer URL.
type DevHome struct {
	Username string
	Password string // "" when the user existed already with a password dev does not know
	// SignInURL is a ready authorization request of the demo BFF.
	SignInURL string
	Clients   []DevClient
}

// DevClient is one demo client as the home page lists it.
type DevClient struct {
	ID           string
	Secret       string // "" for a public client
	Kind         string // what it stands for, e.g. "confidential BFF"
	RedirectURIs []string
}

// homePage is the data of home.html.
type homePage struct {
	Issuer       string
	DiscoveryURL string
	JWKSURL      string
	// Dev is the demo set-up under `authz dev`, nil otherwise.
	Dev *homeDev
}

// homeDev is DevHome as the page shows it. Hidden says the password and
// secrets were left out: the visitor is not on this machine.
type homeDev struct {
	Username, Password string
	SignInURL          string
	Clients            []homeClient
	Hidden             bool
}

type homeClient struct {
	ID, Secret, Kind string
	Public           bool // no secret to show
	RedirectURIs     []string
}

// home serves GET and HEAD / : what this server is and where its
// metadata lives, and under `authz dev` the demo user and clients. It
// reads nothing from the database, so it answers while the database is down.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	d := homePage{
		Issuer:       h.cfg.Issuer,
		DiscoveryURL: h.cfg.Issuer + "/.well-known/openid-configuration",
		JWKSURL:      h.cfg.Issuer + "/.well-known/jwks.json",
	}
	if h.cfg.DevHome != nil {
		// Dev mode may listen on more than loopback; its password and
		// secrets are for the developer at this machine only.
		d.Dev = newHomeDev(h.cfg.DevHome, !h.clientAddr(r).IsLoopback())
	}
	h.pages.renderHome(w, http.StatusOK, d)
}

func newHomeDev(d *DevHome, hide bool) *homeDev {
	out := &homeDev{Username: d.Username, SignInURL: d.SignInURL, Hidden: hide}
	if !hide {
		out.Password = d.Password
	}
	for _, c := range d.Clients {
		hc := homeClient{ID: c.ID, Kind: c.Kind, Public: c.Secret == "", RedirectURIs: c.RedirectURIs}
		if !hide {
			hc.Secret = c.Secret
		}
		out.Clients = append(out.Clients, hc)
	}
	return out
}
