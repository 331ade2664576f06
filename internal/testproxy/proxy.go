// Package testproxy is a TCP proxy for tests that need a server to go away and come back
// (an outage) or to stop answering on open connections (a partition).
package testproxy

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target: Down closes the
// listener and every connection, as a server outage would, Up listens on the same port
// again, Freeze holds every byte in flight until Thaw.
type Proxy struct {
	t      testing.TB
	target string
	port   int
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	// frozen, while set, holds every byte in flight: the server seems to stop answering
	// on open connections, and new ones are accepted but never answered (a partition).
	frozen chan struct{}
}

// New starts a proxy to target (host:port), taken down when the test ends.
func New(t testing.TB, target string) *Proxy {
	p := &Proxy{t: t, target: target}
	p.Up()
	t.Cleanup(p.Down)
	return p
}

// Port is the loopback port the proxy listens on.
func (p *Proxy) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.port
}

// Freeze makes the server stop answering, as a network partition would.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

// Thaw lets the held bytes through again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
}

// hold waits while the proxy is frozen.
func (p *Proxy) hold() {
	p.mu.Lock()
	f := p.frozen
	p.mu.Unlock()
	if f != nil {
		<-f
	}
}

// Up listens again (on the same port after Down) and forwards what comes.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := fmt.Sprintf("127.0.0.1:%d", p.port)
	var (
		ln  net.Listener
		err error
	)
	for range 100 { // the port may linger a moment after Down
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy listen on %s: %v", addr, err)
	}
	p.ln = ln
	p.port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go p.copyAndClose(s, c)
			go p.copyAndClose(c, s)
		}
	}()
}

// Down closes the listener and every connection.
func (p *Proxy) Down() {
	p.Thaw()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// copyAndClose copies src to dst, waiting out a freeze before each write, then closes both.
func (p *Proxy) copyAndClose(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		r, err := src.Read(buf)
		if r > 0 {
			p.hold()
			if _, werr := dst.Write(buf[:r]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
