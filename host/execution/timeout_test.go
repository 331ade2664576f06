package execution

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestTimeoutPrecedence: the request's timeout, else the session's, else the runner's
// own (capped at MaxTimeout), else the host's default; none longer than the runner's cap.
func TestTimeoutPrecedence(t *testing.T) {
	withLimit := &session.Session{Limits: session.Limits{TimeoutMS: 2000}}
	plain := &session.Session{}
	for _, c := range []struct {
		name   string
		s      *session.Session
		reqMS  uint64
		runner runner.Limits
		want   time.Duration
	}{
		{"request first", withLimit, 500, runner.Limits{Timeout: 30 * time.Second}, 500 * time.Millisecond},
		{"then the session", withLimit, 0, runner.Limits{Timeout: 30 * time.Second}, 2 * time.Second},
		{"then the runner", plain, 0, runner.Limits{Timeout: 30 * time.Second}, 30 * time.Second},
		{"the runner's capped", plain, 0, runner.Limits{Timeout: 2 * MaxTimeout}, MaxTimeout},
		{"then the host's default", plain, 0, runner.Limits{}, DefaultTimeout},
		{"the request's, cut to the runner's cap", plain, 90000, runner.Limits{MaxTimeout: 20 * time.Second}, 20 * time.Second},
		{"the session's, cut to the runner's cap", withLimit, 0, runner.Limits{MaxTimeout: time.Second}, time.Second},
		{"the host's default, cut to the runner's cap", plain, 0, runner.Limits{MaxTimeout: time.Second}, time.Second},
		{"under the runner's cap", withLimit, 0, runner.Limits{MaxTimeout: time.Minute}, 2 * time.Second},
	} {
		got, err := Timeout(c.s, Request{TimeoutMS: c.reqMS}, c.runner)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if _, err := Timeout(plain, Request{TimeoutMS: uint64(2 * MaxTimeout / time.Millisecond)}, runner.Limits{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a request over MaxTimeout: %v, want ErrInvalid", err)
	}
}

// TestTimeoutOverflow: a timeout_ms too large for a time.Duration is refused like any
// other over MaxTimeout, not wrapped into a negative duration that fell back to the
// host's default; a session whose limit is over MaxTimeout is named as the culprit.
func TestTimeoutOverflow(t *testing.T) {
	plain := &session.Session{}
	for _, ms := range []uint64{math.MaxUint64, math.MaxInt64, 9223372036855} {
		if d, err := Timeout(plain, Request{TimeoutMS: ms}, runner.Limits{Timeout: 30 * time.Second}); !errors.Is(err, ErrInvalid) {
			t.Errorf("timeout_ms %d: %v, %v; want ErrInvalid", ms, d, err)
		}
	}
	over := &session.Session{Limits: session.Limits{TimeoutMS: math.MaxUint64}}
	d, err := Timeout(over, Request{}, runner.Limits{Timeout: 30 * time.Second})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limits.timeout_ms") {
		t.Errorf("a session's timeout_ms over MaxTimeout: %v, %v; want ErrInvalid naming limits.timeout_ms", d, err)
	}
}
