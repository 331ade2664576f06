package base

import (
	"google.golang.org/grpc/status"
)

// PlainStatus returns err, the gRPC status error of a call into a plugin, as an error
// whose text is the status's message alone ("plugin panic: …"), without gRPC's
// "rpc error: code = … desc = " framing, which means nothing to an operator. It wraps
// err, so status.Code and errors.Is see through it. Any other error (nil included) comes
// back as it is.
func PlainStatus(err error) error {
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); !ok {
		return err
	}
	return plainStatus{err}
}

// plainStatus is a gRPC status error told by its message.
type plainStatus struct{ err error }

func (e plainStatus) Error() string {
	st := status.Convert(e.err)
	if m := st.Message(); m != "" {
		return m
	}
	return "the plugin answered " + st.Code().String()
}

func (e plainStatus) Unwrap() error { return e.err }
