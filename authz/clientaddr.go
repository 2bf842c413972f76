package authz

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientAddr is the address of the client that sent r: the connection's
// peer, unless the peer is one of cfg.TrustedProxies. Then X-Forwarded-For
// is read from the right, where each trusted proxy appended the address it
// was sent from, skipping trusted proxies; the first address that is not
// one is the client. Whatever lies left of it was written by the client
// and is ignored, so no one can choose their address by sending the header.
func (h *Handler) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() || !h.trustedProxy(peer) {
		return peer
	}
	hops := forwardedFor(r.Header)
	client := peer
	for _, hop := range slices.Backward(hops) {
		a := parseHop(hop)
		if !a.IsValid() {
			// A trusted proxy wrote something we cannot read: the last
			// address we can vouch for stands in for the client.
			return client
		}
		client = a
		if !h.trustedProxy(a) {
			return a
		}
	}
	// Every hop is a trusted proxy: the request began inside.
	return client
}

func (h *Handler) trustedProxy(a netip.Addr) bool {
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses a connection's remote address ("host:port"); invalid
// when it is not an IP address (a Unix socket, a test's made-up value).
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap().WithZone("")
}

// forwardedFor lists the X-Forwarded-For hops of every such header, in
// order: a proxy may add a header line instead of appending to the last.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("203.0.113.7:4711", "[2001:db8::1]:443") as some proxies write it.
func parseHop(hop string) netip.Addr {
	if a, err := netip.ParseAddr(hop); err == nil {
		return a.Unmap().WithZone("")
	}
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(hop, "["), "]")); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// addrKey is the name the throttles count an address under. An IPv6 client
// usually holds a whole /64, so that is what is counted; an IPv4 address
// is counted alone. An address that cannot be read is counted as
// "unknown", all together.
func addrKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return a.String()
	default:
		p, _ := a.Prefix(64)
		return p.String()
	}
}
