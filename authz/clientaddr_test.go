package authz

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestClientAddr: X-Forwarded-For counts only when the connection comes
// from a trusted proxy, and then only from the right up to the first
// address that is not a trusted proxy: what a client writes into the
// header itself is never taken for its address.
func TestClientAddr(t *testing.T) {
	t.Parallel()
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{cfg: Config{TrustedProxies: proxies}}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"no proxy", "203.0.113.5:1234", nil, "203.0.113.5"},
		{"spoofed by an untrusted peer", "203.0.113.5:1234", []string{"198.51.100.7"}, "203.0.113.5"},
		{"spoofed chain from an untrusted peer", "203.0.113.5:1234", []string{"198.51.100.7, 10.0.0.2"}, "203.0.113.5"},
		{"trusted proxy", "10.0.0.1:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"trusted proxy, a single address", "192.0.2.1:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"next to a trusted single address", "192.0.2.2:443", []string{"198.51.100.7"}, "192.0.2.2"},
		{"chain of proxies, client's own claim ignored", "10.0.0.1:443", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
		{"chain over two header lines", "10.0.0.1:443", []string{"6.6.6.6, 198.51.100.7", "10.0.0.2"}, "198.51.100.7"},
		{"every hop a trusted proxy", "10.0.0.1:443", []string{"10.0.0.9, 10.0.0.2"}, "10.0.0.9"},
		{"trusted proxy without the header", "10.0.0.1:443", nil, "10.0.0.1"},
		{"unreadable hop from a trusted proxy", "10.0.0.1:443", []string{"unknown, 10.0.0.2"}, "10.0.0.2"},
		{"hop with a port", "10.0.0.1:443", []string{"198.51.100.7:4711"}, "198.51.100.7"},
		{"IPv6 hop with a port", "10.0.0.1:443", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.1]:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"IPv6 proxy", "[fd00::1]:443", []string{"2001:db8::5"}, "2001:db8::5"},
		{"IPv6 peer with a zone", "[fe80::1%eth0]:443", nil, "fe80::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := h.clientAddr(r); got.String() != tc.want {
				t.Errorf("clientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestAddrKey: IPv4 addresses are counted alone, IPv6 ones by their /64,
// which one client usually holds whole.
func TestAddrKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"198.51.100.7":         "198.51.100.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
	} {
		if got := addrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("addrKey(%s) = %s, want %s", in, got, want)
		}
	}
	if got := addrKey(netip.Addr{}); got != "unknown" {
		t.Errorf("addrKey(invalid) = %s, want unknown", got)
	}
}

// TestTrustedProxiesFromEnv: AUTHZ_TRUSTED_PROXIES is comma-separated
// CIDRs or addresses; anything else is refused with the variable named.
func TestTrustedProxiesFromEnv(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == "AUTHZ_TRUSTED_PROXIES" {
				return v
			}
			return ""
		}
	}
	c, err := ConfigFromEnv(env(" 10.0.0.0/8, 192.0.2.1 ,fd00::/8, 10.1.2.3/16, ::ffff:172.16.0.0/108"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.TrustedProxies {
		got = append(got, p.String())
	}
	if want := "10.0.0.0/8 192.0.2.1/32 fd00::/8 10.1.0.0/16 172.16.0.0/12"; strings.Join(got, " ") != want {
		t.Errorf("TrustedProxies = %v, want %s", got, want)
	}
	if c, err := ConfigFromEnv(env("")); err != nil || c.TrustedProxies != nil {
		t.Errorf("unset: %v, %v; want no trusted proxies", c.TrustedProxies, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "10.0.0.0/8,garbage", "fe80::1%eth0"} {
		if _, err := ConfigFromEnv(env(bad)); err == nil || !strings.Contains(err.Error(), "AUTHZ_TRUSTED_PROXIES") {
			t.Errorf("AUTHZ_TRUSTED_PROXIES=%q: %v, want an error naming the variable", bad, err)
		}
	}
}
