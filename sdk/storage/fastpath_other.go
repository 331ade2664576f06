//go:build !linux

package storage

import (
	"errors"
	"net"
)

// errNoPeerCheck keeps the fast path off where the peer's credentials cannot be checked.
var errNoPeerCheck = errors.New("peer credentials cannot be checked on this system")

// peerCheckSupported tells whether checkPeer can work here.
func peerCheckSupported() error { return errNoPeerCheck }

// checkPeer refuses every peer: see errNoPeerCheck.
func checkPeer(*net.UnixConn, bool) error { return errNoPeerCheck }
