package base

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPlainStatus: a plugin call's gRPC status error is told by its message alone, not
// as "rpc error: code = Internal desc = plugin panic: …", and status.Code and errors.Is
// still see the status through it; other errors are left as they are.
func TestPlainStatus(t *testing.T) {
	st := status.Error(codes.Internal, "plugin panic: boom")
	err := fmt.Errorf("runner execute: %w", PlainStatus(st))
	if err.Error() != "runner execute: plugin panic: boom" || status.Code(err) != codes.Internal || !errors.Is(err, st) {
		t.Fatalf("%q (code %v, is the status %v)", err, status.Code(err), errors.Is(err, st))
	}
	dl := PlainStatus(status.FromContextError(context.DeadlineExceeded).Err())
	if dl.Error() != "context deadline exceeded" || status.Code(dl) != codes.DeadlineExceeded {
		t.Fatalf("deadline: %q (code %v)", dl, status.Code(dl))
	}
	if e := PlainStatus(status.Error(codes.Unavailable, "")); e.Error() != "the plugin answered Unavailable" {
		t.Fatalf("a status without a message: %q", e)
	}
	plain := errors.New("not a status")
	if PlainStatus(plain) != plain || PlainStatus(nil) != nil {
		t.Fatal("a plain error or nil was changed")
	}
}
