package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
)

// TestConnectionRefused: a call to an address where nothing listens says so with the
// address, for every kind of call (plain, health, stream, export), and still unwraps to
// the request's *url.Error and ECONNREFUSED.
func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := New(addr)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"GetSession": func() error { _, err := c.GetSession(ctx, "s"); return err },
		"Health":     func() error { _, err := c.Health(ctx); return err },
		"ExecuteStream": func() error {
			_, err := c.ExecuteStream(ctx, "s", ExecuteRequest{Runner: "python", Input: "1"}, func(Event) {})
			return err
		},
		"Export": func() error { return c.Export(ctx, ExportRequest{SessionID: "s"}, io.Discard) },
	} {
		err := call()
		want := "connection refused (is limitd running at http://" + addr + "?)"
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s: %v, want it to end %q", name, err, want)
		}
		var ue *url.Error
		if !errors.As(err, &ue) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: %v does not unwrap to a *url.Error and ECONNREFUSED", name, err)
		}
	}
}
