package api

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// foreignHost says why a request comes from a web page it must not (""when it may).
// A daemon on loopback without a token is reachable by every web page its user opens:
// a page cannot read its answers, but may send it simple requests (a POST with a
// text/plain body runs code), and through DNS rebinding (its own name resolving to
// 127.0.0.1) may read them too. So the Host a request names must be an IP address,
// localhost or a name in allowed ("*.example.com" for subdomains, "*" for any), which a
// rebound name is not; and a browser's Origin, when it sends one, must name such a
// host too, which a cross-site page's does not. Clients that are not browsers send no
// Origin and name the address they dial.
func foreignHost(r *http.Request, allowed []string) string {
	if !hostAllowed(hostOnly(r.Host), allowed) {
		return fmt.Sprintf("requests naming host %.100q are refused (DNS rebinding); use an IP address or localhost, or add the name to api.allowed_hosts", r.Host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" || u.Host == "" || !hostAllowed(hostOnly(u.Host), allowed) {
		return fmt.Sprintf("requests from web pages of %.100q are refused (cross-site requests); add the page's host to api.allowed_hosts to let it call the API", origin)
	}
	return ""
}

// hostOnly is host without its port and brackets, in lower case.
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.Trim(h, "[]"))
}

// hostAllowed reports whether h is an IP address, localhost (or a name under
// .localhost), or matches allowed.
func hostAllowed(h string, allowed []string) bool {
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	for _, a := range allowed {
		switch {
		case a == "*", a == h:
			return true
		case strings.HasPrefix(a, "*.") && strings.HasSuffix(h, a[1:]):
			return true
		}
	}
	return false
}
