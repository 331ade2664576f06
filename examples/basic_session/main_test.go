package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/client"
)

// TestHints: the example says what to do when nothing listens at the address or the
// daemon wants a token, as limitctl does, not only Go's "connection refused" or a 401.
func TestHints(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	unauthorized := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"type":"about:blank","title":"Unauthorized","status":401,"detail":"this API needs a token"}`)
	}))
	defer unauthorized.Close()
	for _, c := range []struct {
		addr, token string
		err, hint   string
	}{
		{closed, "", "connection refused (is limitd running at http://" + closed + "?)", "start limitd (make run), or set -addr or LIMIT_ADDR"},
		{unauthorized.URL, "", "401 Unauthorized", "set LIMIT_TOKEN, or LIMIT_TOKEN_FILE"},
		{unauthorized.URL, "t", "401 Unauthorized", "the daemon refused the token sent"},
	} {
		cl := client.New(c.addr)
		cl.Token = c.token
		err := run(context.Background(), cl, "python", "print(1)", io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want it to say %q", c.addr, err, c.err)
			continue
		}
		if h := hint(err, c.token != ""); !strings.Contains(h, c.hint) {
			t.Errorf("%s: hint %q, want it to say %q", c.addr, h, c.hint)
		}
	}
}
