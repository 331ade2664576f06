package client

import (
	"errors"
	"net/http"
	"syscall"
)

// send does req with the client's HTTP client. A connection the daemon's address refused
// (nothing listening there) is told as such, with the address: Go's own text, "dial tcp
// 127.0.0.1:8080: connect: connection refused", does not say what to do.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	res, err := c.http().Do(req)
	if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
		return nil, &refusedError{err: err, addr: req.URL.Scheme + "://" + req.URL.Host}
	}
	return res, err
}

// refusedError is a request whose connection the daemon's address refused. It unwraps to
// the *url.Error of the request, so errors.As and errors.Is see what they saw before.
type refusedError struct {
	err  error
	addr string // scheme://host:port
}

func (e *refusedError) Error() string {
	return e.err.Error() + " (is limitd running at " + e.addr + "?)"
}

func (e *refusedError) Unwrap() error { return e.err }
