package devserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// listenTCP listens on addr. When another program has the port, the error
// says how to choose another: hint turns an address that is free right now
// into the flag or variable to set, e.g. "AUTHZ_LISTEN=127.0.0.1:8090".
func listenTCP(addr string, hint func(free string) string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		msg := "another program has the port; stop it"
		if free := freeAddr(addr); free != "" {
			msg += ", or choose another port with " + hint(free)
		}
		return nil, fmt.Errorf("%w: %s", err, msg)
	}
	return ln, err
}

// freeAddr finds a port near addr's that nothing listens on now, on the
// same host: port+10 onwards (8080 suggests 8090, unless 8090 is taken
// too), else one the system picks. Empty when the host takes none.
func freeAddr(addr string) string {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if port, err := strconv.Atoi(portText); err == nil {
		for p := port + 10; p < port+40 && p <= 65535; p++ {
			if candidate := net.JoinHostPort(host, strconv.Itoa(p)); canListen(candidate) {
				return candidate
			}
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return ""
	}
	defer ln.Close()
	return net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

func canListen(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// dialAddr is where this machine reaches a listener: its address, with
// 127.0.0.1 for "every address".
func dialAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// loopbackAddr reports whether a listen address is on this machine only:
// localhost or a loopback IP, with a port.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// localIssuer is http://localhost:PORT for a server listening on every
// address (or on localhost), else http://HOST:PORT with the host as given.
func localIssuer(listen string, addr net.Addr) string {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	port := "8080"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	}
	return "http://" + net.JoinHostPort(host, port)
}
