//go:build !linux

package fastpath

import (
	"errors"
	"net"
)

// errNoPeerCheck keeps fast paths off where the peer's credentials cannot be checked.
var errNoPeerCheck = errors.New("peer credentials cannot be checked on this system")

// PeerCheckSupported tells whether CheckPeer can work here.
func PeerCheckSupported() error { return errNoPeerCheck }

// CheckPeer refuses every peer: see errNoPeerCheck.
func CheckPeer(*net.UnixConn, bool) error { return errNoPeerCheck }
