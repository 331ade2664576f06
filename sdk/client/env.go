package client

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// DefaultAddr is the daemon's address when neither a flag nor LIMIT_ADDR gives one: what
// `make run` listens on.
const DefaultAddr = "http://127.0.0.1:8080"

// ParseAddr returns a daemon's base URL from an address as users write it (limitctl's
// -addr, LIMIT_ADDR): an http or https URL, or a bare HOST:PORT, which means
// http://HOST:PORT. A host left out (":8080", as a listen address is written) means
// 127.0.0.1, and a path ending in /v1 (the API's prefix, which the client adds itself)
// is taken without it.
func ParseAddr(addr string) (*url.URL, error) {
	s := addr
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the value is quoted already
		}
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.Host == "":
		return nil, errors.New("no host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("a query or fragment has no place in it")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %s is not between 1 and 65535", p)
		}
	}
	if u.Hostname() == "" {
		// Sent as it is, the Host header would be ":8080", which the daemon refuses as
		// a foreign host (DNS rebinding).
		u.Host = "127.0.0.1" + u.Host
	}
	if p := strings.TrimRight(u.Path, "/"); p == "/v1" || strings.HasSuffix(p, "/v1") {
		u.Path = strings.TrimSuffix(p, "/v1")
		u.RawPath = ""
	}
	return u, nil
}

// ReadTokenFile returns the API token in file: the first field of its first line that is
// neither empty nor a # comment (the daemon's token files hold one token per line,
// followed by the user it is for, if it is a user's).
func ReadTokenFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cannot read the API token: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("the token file %s holds no token", file)
}

// FromEnv returns a client as limitctl makes one without flags: of the daemon LIMIT_ADDR
// names (else DefaultAddr), with the token LIMIT_TOKEN holds, else the one in the file
// LIMIT_TOKEN_FILE names, else none. addr, when not empty, overrides LIMIT_ADDR.
func FromEnv(addr string) (*Client, error) {
	from := "address"
	if addr == "" {
		addr, from = os.Getenv("LIMIT_ADDR"), "LIMIT_ADDR"
		if addr == "" {
			addr = DefaultAddr
		}
	}
	u, err := ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a daemon address: %v; want http://HOST:PORT, https://HOST:PORT or HOST:PORT", from, addr, err)
	}
	// A token written into the address (http://:TOKEN@host) is a token, as limitctl takes
	// it, never sent as Basic authentication.
	var inAddr string
	if u.User != nil {
		inAddr, _ = u.User.Password()
		u.User = nil
	}
	c := New(u.String())
	c.Token = inAddr
	if tok := strings.TrimSpace(os.Getenv("LIMIT_TOKEN")); tok != "" {
		c.Token = tok
	} else if f := os.Getenv("LIMIT_TOKEN_FILE"); f != "" {
		if c.Token, err = ReadTokenFile(f); err != nil {
			return nil, fmt.Errorf("LIMIT_TOKEN_FILE: %w", err)
		}
	}
	return c, nil
}
