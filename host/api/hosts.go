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
// rebound name is not. A browser's Origin, when it sends one, is held to a narrower
// rule (originAllowed): an IP address is fine in Host, since rebinding cannot make a
// browser name one, but any site may serve its pages from an IP address, so in Origin
// only a loopback address, localhost, the API's own origin or a name in allowed pass.
// Clients that are not browsers send no Origin and name the address they dial.
func foreignHost(r *http.Request, allowed []string) string {
	if !hostAllowed(hostOnly(r.Host), allowed) {
		return fmt.Sprintf("requests naming host %.100q are refused (DNS rebinding); use an IP address or localhost, or add the name to api.allowed_hosts", r.Host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if !originAllowed(origin, r.Host, allowed) {
		return fmt.Sprintf("requests from web pages of %.100q are refused (cross-site requests); add the page's host to api.allowed_hosts to let it call the API", origin)
	}
	return ""
}

// originAllowed reports whether a browser's Origin header names a page that may call
// the API at host (the request's Host): a page of a loopback address or localhost (the
// user's own machine), of the API's own origin (same host and port), or of a host in
// allowed. "null" (a sandboxed frame, a file) does not pass.
func originAllowed(origin, host string, allowed []string) bool {
	u, err := url.Parse(origin)
	if err != nil || origin == "null" || u.Host == "" {
		return false
	}
	h := hostOnly(u.Host)
	if h == "" {
		return false
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if sameHostPort(u.Host, host, u.Scheme) {
		return true
	}
	return nameAllowed(h, allowed)
}

// sameHostPort reports whether an origin's host[:port] and a request's Host name the
// same host and port, a port left out being scheme's default (80 or 443).
func sameHostPort(originHost, host, scheme string) bool {
	norm := func(hp string) string {
		hp = strings.ToLower(hp)
		switch {
		case scheme == "http" && strings.HasSuffix(hp, ":80"):
			hp = strings.TrimSuffix(hp, ":80")
		case scheme == "https" && strings.HasSuffix(hp, ":443"):
			hp = strings.TrimSuffix(hp, ":443")
		}
		return strings.TrimSuffix(hp, ".")
	}
	return host != "" && norm(originHost) == norm(host)
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
	return nameAllowed(h, allowed)
}

// nameAllowed reports whether h matches one of allowed: the name itself, "*.NAME" for
// the names under NAME, or "*" for any.
func nameAllowed(h string, allowed []string) bool {
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
