// Package peercred finds which local user owns the other end of a TCP connection, from
// the kernel's socket tables (/proc/net/tcp and tcp6): the host uses it to refuse API
// requests that come from code it sandboxes.
package peercred

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// tables are the kernel's TCP socket tables of the current network namespace.
var tables = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// TCPPeerUID returns the uid that owns the socket at the other end of a TCP connection
// whose own end is local and whose other end is remote, when that socket is on this
// machine (in this network namespace). ok is false when no local socket matches: the
// peer is on another machine, or already gone.
func TCPPeerUID(local, remote netip.AddrPort) (uid int, ok bool, err error) {
	// The peer's socket has the connection's ends the other way round.
	want := [2]netip.AddrPort{unmap(remote), unmap(local)}
	for _, path := range tables {
		uid, ok, err := find(path, want)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, false, err
		}
		if ok {
			return uid, true, nil
		}
	}
	return 0, false, nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// find scans one table for a socket whose local and remote addresses are want.
func find(path string, want [2]netip.AddrPort) (int, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 8 {
			continue
		}
		l, err1 := parseAddr(fields[1])
		r, err2 := parseAddr(fields[2])
		if err1 != nil || err2 != nil {
			return 0, false, fmt.Errorf("%s: unreadable line %q", path, sc.Text())
		}
		if l != want[0] || r != want[1] {
			continue
		}
		uid, err := strconv.Atoi(string(fields[7]))
		if err != nil {
			return 0, false, fmt.Errorf("%s: unreadable uid in %q", path, sc.Text())
		}
		return uid, true, nil
	}
	return 0, false, sc.Err()
}

// parseAddr reads "0100007F:1F90" (IPv4) or 32 hex digits and a port (IPv6): the address
// is written as 32-bit words in the machine's byte order (little-endian here), the port
// in hex. IPv4-mapped IPv6 addresses come back as IPv4.
func parseAddr(b []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, errors.New("no port")
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(string(b[:i]))
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", b[:i])
	}
	for w := 0; w < len(raw); w += 4 {
		binary.BigEndian.PutUint32(raw[w:], binary.LittleEndian.Uint32(raw[w:]))
	}
	var addr netip.Addr
	if len(raw) == 4 {
		addr = netip.AddrFrom4([4]byte(raw))
	} else {
		addr = netip.AddrFrom16([16]byte(raw)).Unmap()
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
