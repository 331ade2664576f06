package execution

import (
	"errors"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/session"
)

// TestTimeoutPrecedence: the request's timeout, else the session's, else the runner's
// own (capped at MaxTimeout), else the host's default.
func TestTimeoutPrecedence(t *testing.T) {
	withLimit := &session.Session{Limits: session.Limits{TimeoutMS: 2000}}
	plain := &session.Session{}
	for _, c := range []struct {
		name   string
		s      *session.Session
		reqMS  uint64
		runner time.Duration
		want   time.Duration
	}{
		{"request first", withLimit, 500, 30 * time.Second, 500 * time.Millisecond},
		{"then the session", withLimit, 0, 30 * time.Second, 2 * time.Second},
		{"then the runner", plain, 0, 30 * time.Second, 30 * time.Second},
		{"the runner's capped", plain, 0, 2 * MaxTimeout, MaxTimeout},
		{"then the host's default", plain, 0, 0, DefaultTimeout},
	} {
		got, err := Timeout(c.s, Request{TimeoutMS: c.reqMS}, c.runner)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if _, err := Timeout(plain, Request{TimeoutMS: uint64(2 * MaxTimeout / time.Millisecond)}, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("a request over MaxTimeout: %v, want ErrInvalid", err)
	}
}
