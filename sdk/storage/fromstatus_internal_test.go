package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFromStatusSaysTheSentinelOnce: a plugin's error that wraps a sentinel (the file
// backend's full disk) comes back through gRPC as the sentinel, its words said once
// ("storage is out of space: storage is out of space: ..." was the 507's detail).
func TestFromStatusSaysTheSentinelOnce(t *testing.T) {
	for _, sentinel := range []error{ErrNoSpace, ErrUnavailable, ErrInvalid} {
		err := fromStatus("put", toStatus(fmt.Errorf("%w: write k: the disk holding /d is full", sentinel)))
		if !errors.Is(err, sentinel) || strings.Count(err.Error(), sentinel.Error()) != 1 || !strings.HasSuffix(err.Error(), "the disk holding /d is full") {
			t.Errorf("%v: %v", sentinel, err)
		}
	}
	// A message that is only the sentinel's words (a deadline) is not repeated.
	for code, sentinel := range map[codes.Code]error{codes.DeadlineExceeded: context.DeadlineExceeded, codes.Canceled: context.Canceled} {
		err := fromStatus("get", status.FromContextError(sentinel).Err())
		if !errors.Is(err, sentinel) || err.Error() != "storage get: "+sentinel.Error() {
			t.Errorf("%v: %q, want %q", code, err, "storage get: "+sentinel.Error())
		}
	}
	// A message that does not begin with the sentinel's words is kept whole.
	err := fromStatus("get", status.Error(codes.ResourceExhausted, "quota exceeded"))
	if !errors.Is(err, ErrNoSpace) || err.Error() != "storage get: storage is out of space: quota exceeded" {
		t.Errorf("plain message: %v", err)
	}
}

// TestFromStatusNotSent: a gRPC call that failed before it was written to a connection
// (the dial failed, or the dying plugin reset the socket during the TLS handshake) is
// unavailable and not sent, so the host may make even a compare-and-swap again; one that
// failed on an established connection is unavailable only.
func TestFromStatusNotSent(t *testing.T) {
	for msg, notSent := range map[string]bool{
		`connection error: desc = "transport: error while dialing: dial unix /tmp/plugin1: connect: connection refused"`:                   true,
		`connection error: desc = "transport: authentication handshake failed: read unix @->/tmp/plugin1: read: connection reset by peer"`: true,
		`error reading from server: EOF`: false,
	} {
		err := fromStatus("cas", status.Error(codes.Unavailable, msg))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotSent) != notSent {
			t.Errorf("%s: %v, want not sent %v", msg, err, notSent)
		}
	}
}
