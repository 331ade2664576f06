// Package fastpath is the transport under the plugin kinds' fast paths (sdk/storage,
// sdk/runner): a side channel a plugin opens on the host's request, over its gRPC service
// (an OpenFastPath method), for the calls that are made often. A unary gRPC call through
// go-plugin costs ~200 µs here (HTTP/2 and TLS framing, several goroutine hand-offs on each
// side); a frame on a Unix socket costs ~25 µs.
//
// It is safe where gRPC relies on mutual TLS because the socket lives in a fresh 0700
// directory, accepts only the connections the host announced and is then removed, every
// connection must present a 32-byte random token that travelled over the mutually
// authenticated gRPC channel, and each side checks the other's kernel-reported credentials
// (same user; the plugin is the host's child).
//
// After the token and the plugin's one-byte acknowledgement, the host sends requests and
// the plugin answers, in frames (all integers little-endian):
//
//	request:  u32 length | u32 id | u8 op | i64 deadline (Unix ns, 0: none) | message
//	response: u32 length | u32 id | u8 code | message
//
// length counts the bytes after itself. What op, code and message mean is the kind's
// (see sdk/storage/fastpath.go and sdk/runner/fastpath.go).
package fastpath

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

const (
	// tokenSize is the length of the authentication token.
	tokenSize = 32
	// ack is the byte the plugin sends after accepting a token.
	ack = 0x6b
	// RequestHeader and ResponseHeader are the fixed bytes of a frame after its length.
	RequestHeader  = 4 + 1 + 8
	ResponseHeader = 4 + 1
	// maxConnections bounds the connections the host may ask for in one OpenFastPath.
	maxConnections = 16
	// acceptWindow bounds how long an offered socket waits for the host's connections
	// before it is removed.
	acceptWindow = 10 * time.Second
	// handshakeTimeout bounds sending and checking the token.
	handshakeTimeout = 5 * time.Second
)

// AppendRequestHeader starts a request frame in b; FinishFrame sets its length.
func AppendRequestHeader(b []byte, id uint32, op byte, deadline int64) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, id)
	b = append(b, op)
	return binary.LittleEndian.AppendUint64(b, uint64(deadline))
}

// AppendResponseHeader starts a response frame in b; FinishFrame sets its length.
func AppendResponseHeader(b []byte, id uint32, code byte) []byte {
	b = append(b, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, id)
	return append(b, code)
}

// FinishFrame writes the length of the frame b into its first four bytes.
func FinishFrame(b []byte) []byte {
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// ErrorFrame is the answer that ends request id with err: the gRPC code of its status
// (never 0, which means success) and its text.
func ErrorFrame(id uint32, err error) []byte {
	st := status.Convert(err)
	code := st.Code()
	if code == codes.OK {
		code = codes.Unknown
	}
	return FinishFrame(append(AppendResponseHeader(nil, id, byte(code)), st.Message()...))
}

// ReadFrame reads one frame from r and returns the bytes after its length, which must be
// within [least, most].
func ReadFrame(r *bufio.Reader, least, most uint32) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n < least || n > most {
		return nil, fmt.Errorf("bad frame length %d", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// FrameWriter writes whole frames to a connection from many goroutines. A goroutine that
// finds the connection idle writes its frame itself; one that finds it busy appends its
// frame to a buffer that the busy writer sends next, so under load many frames leave in
// one system call and nobody waits for a lock held across a write. Frames are never
// refused for being many: a sender that must not outrun the reader uses WriteWait.
type FrameWriter struct {
	conn    net.Conn
	mu      sync.Mutex
	writing bool
	pending []byte
	spare   []byte
	err     error
	// idle is signalled (closed and replaced) whenever the writer goes idle.
	idle chan struct{}
}

// NewFrameWriter returns a writer of frames to conn.
func NewFrameWriter(conn net.Conn) *FrameWriter { return &FrameWriter{conn: conn} }

// maxSpare bounds the buffer the writer keeps between bursts.
const maxSpare = 1 << 20

// Write sends frame, or queues it behind the write in progress. An error means the
// connection is broken; it wraps ErrNotSent when frame was not sent whole (the other side
// cannot have read it). A queued frame's failure is seen by its sender through the
// connection's reader instead.
func (w *FrameWriter) Write(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if w.writing {
		w.pending = append(w.pending, frame...)
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	w.mu.Unlock()
	_, err := w.conn.Write(frame)
	ownErr := err
	w.mu.Lock()
	for err == nil && len(w.pending) > 0 {
		out := w.pending
		// The kept buffer becomes the queue and is no longer kept: out replaces it below
		// only if it is small enough, and a buffer must never be both the queue and the
		// batch being written.
		w.pending, w.spare = w.spare[:0], nil
		w.mu.Unlock()
		_, err = w.conn.Write(out)
		w.mu.Lock()
		if cap(out) <= maxSpare {
			w.spare = out[:0]
		}
	}
	if err != nil {
		w.err = err
		w.pending = nil
	}
	w.writing = false
	if w.idle != nil {
		close(w.idle)
		w.idle = nil
	}
	w.mu.Unlock()
	if err != nil {
		_ = w.conn.Close() // wakes the reader, which fails the calls still waiting
	}
	if ownErr != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, ownErr)
	}
	return err
}

// ErrNotSent marks a write that failed before its frame was sent whole: the other side
// never read the request, so the call can be made again even if it is not idempotent.
var ErrNotSent = errors.New("request not sent")

// WriteWait is Write for a sender that produces frames faster than the other side may
// read them (a runner's output): while more than limit bytes wait behind the write in
// progress, it waits for the writer to catch up, so the socket's buffer, not memory, takes
// the excess, and the reader's pace slows the sender down as gRPC's flow control would.
func (w *FrameWriter) WriteWait(ctx context.Context, frame []byte, limit int) error {
	for {
		w.mu.Lock()
		if w.err != nil || !w.writing || len(w.pending) < limit {
			w.mu.Unlock()
			return w.Write(frame)
		}
		if w.idle == nil {
			w.idle = make(chan struct{})
		}
		idle := w.idle
		w.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Server is the plugin's side: the sockets it offered and the connections it accepted,
// and the requests being served on them, so that Shutdown can answer those before it
// closes everything.
type Server struct {
	mu        sync.Mutex
	closed    bool
	listeners map[*net.UnixListener]string // to the directory of their socket
	conns     map[net.Conn]struct{}
	calls     sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// newServer returns a server that has offered nothing yet.
func newServer() *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{listeners: map[*net.UnixListener]string{}, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}
}

// Context is the parent of the requests' contexts: Shutdown cancels it once the requests
// in progress were answered.
func (s *Server) Context() context.Context { return s.ctx }

// Open answers an OpenFastPath request for a kind whose framing version is version: it
// offers a socket for the connections asked for (see offer).
func (s *Server) Open(req *limitv1.OpenFastPathRequest, version uint32, prefix string, serve func(*net.UnixConn)) (*limitv1.OpenFastPathResponse, error) {
	return s.OpenVersions(req, version, version, prefix, serve)
}

// OpenVersions is Open for a plugin that speaks the framing versions oldest to newest: it
// offers the version asked for. A host that asked for a newer one is refused with
// FAILED_PRECONDITION, and may ask again for an older one.
func (s *Server) OpenVersions(req *limitv1.OpenFastPathRequest, oldest, newest uint32, prefix string, serve func(*net.UnixConn)) (*limitv1.OpenFastPathResponse, error) {
	version := req.GetVersion()
	if version < oldest || version > newest {
		return nil, status.Errorf(codes.FailedPrecondition, "fast path version %d not offered (this plugin speaks %d to %d)", version, oldest, newest)
	}
	addr, token, err := s.offer(prefix, int(req.GetConnections()), serve)
	if err != nil {
		return nil, err
	}
	return &limitv1.OpenFastPathResponse{Version: version, Network: "unix", Address: addr, Token: token}, nil
}

// CheckOffer checks a plugin's answer to OpenFastPath against the version asked for.
func CheckOffer(r *limitv1.OpenFastPathResponse, version uint32) error {
	if r.GetVersion() != version || r.GetNetwork() != "unix" || len(r.GetToken()) != tokenSize {
		return fmt.Errorf("plugin offers fast path version %d on %q with a %d-byte token; want version %d on unix with %d bytes",
			r.GetVersion(), r.GetNetwork(), len(r.GetToken()), version, tokenSize)
	}
	return nil
}

// offer creates a socket for n connections in a fresh directory named prefix*, and
// returns its path and the token the connections must present. It accepts them in the
// background and calls serve for each authenticated one, on a goroutine of its own; once n
// were accepted, or acceptWindow passed, the socket and its directory are removed. Errors
// are gRPC statuses, for OpenFastPath to return.
func (s *Server) offer(prefix string, n int, serve func(*net.UnixConn)) (addr string, token []byte, err error) {
	if n < 1 || n > maxConnections {
		return "", nil, status.Errorf(codes.InvalidArgument, "fast path: %d connections requested, want 1 to %d", n, maxConnections)
	}
	if err := PeerCheckSupported(); err != nil {
		return "", nil, status.Errorf(codes.FailedPrecondition, "fast path: %v", err)
	}
	token = make([]byte, tokenSize)
	if _, err := rand.Read(token); err != nil {
		return "", nil, status.Errorf(codes.Internal, "fast path token: %v", err)
	}
	// Where the host put go-plugin's socket (base.LaunchConfig.SocketDir), so a host killed
	// with SIGKILL inside the accept window leaves this one where it sweeps; else the
	// system's temporary directory.
	dir, err := os.MkdirTemp(os.Getenv(plugin.EnvUnixSocketDir), prefix) // mode 0700
	if err != nil {
		return "", nil, status.Errorf(codes.FailedPrecondition, "fast path directory: %v", err)
	}
	path := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, status.Errorf(codes.FailedPrecondition, "fast path socket: %v", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		_ = os.RemoveAll(dir)
		return "", nil, status.Error(codes.Unavailable, "plugin is shutting down")
	}
	s.listeners[l] = dir
	s.mu.Unlock()
	go s.accept(l, dir, token, n, serve)
	return path, token, nil
}

// accept takes n authenticated connections on l, then removes the socket and its directory,
// so nothing else can connect later.
func (s *Server) accept(l *net.UnixListener, dir string, token []byte, n int, serve func(*net.UnixConn)) {
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		_ = l.Close()
		_ = os.RemoveAll(dir)
	}()
	_ = l.SetDeadline(time.Now().Add(acceptWindow))
	for accepted := 0; accepted < n; {
		c, err := l.AcceptUnix()
		if err != nil {
			return // window over, or shutting down
		}
		if err := authenticate(c, token); err != nil {
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		accepted++
		go serve(c)
	}
}

// authenticate checks the peer's user and its token, and acknowledges it.
func authenticate(c *net.UnixConn, token []byte) error {
	if err := CheckPeer(c, false); err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	got := make([]byte, tokenSize)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, token) != 1 {
		return errors.New("wrong token")
	}
	if _, err := c.Write([]byte{ack}); err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// Begin registers a request about to be served; false means the server is shutting down
// and the request must not start. Every true is matched by an End.
func (s *Server) Begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.calls.Add(1) // under mu, so Shutdown's Wait never races an Add
	return true
}

// End marks a request begun with Begin as answered.
func (s *Server) End() { s.calls.Done() }

// Drop closes a connection whose reading failed, unless Shutdown is closing them all.
func (s *Server) Drop(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		delete(s.conns, c)
		_ = c.Close()
	}
}

// Shutdown stops taking requests and connections, waits for the requests being served to
// be answered, closes every connection and cancels Context.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closed = true
	for l, dir := range s.listeners {
		// Here rather than in accept, whose goroutine may not run again before the
		// process exits.
		_ = l.Close()
		_ = os.RemoveAll(dir)
	}
	for c := range s.conns {
		if uc, ok := c.(*net.UnixConn); ok {
			_ = uc.CloseRead()
		}
	}
	s.mu.Unlock()
	s.calls.Wait()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	s.cancel()
}

// Dial opens and authenticates one connection to a socket a plugin offered: the peer must
// be a child of this process running as its user, and must acknowledge token.
func Dial(ctx context.Context, addr string, token []byte) (*net.UnixConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, err
	}
	uc := nc.(*net.UnixConn)
	fail := func(err error) (*net.UnixConn, error) {
		_ = uc.Close()
		return nil, err
	}
	if err := CheckPeer(uc, true); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = uc.SetDeadline(deadline)
	if _, err := uc.Write(token); err != nil {
		return fail(err)
	}
	var reply [1]byte
	if _, err := io.ReadFull(uc, reply[:]); err != nil {
		return fail(fmt.Errorf("plugin refused the fast path connection: %w", err))
	}
	if reply[0] != ack {
		return fail(fmt.Errorf("plugin answered %#x to the fast path token", reply[0]))
	}
	_ = uc.SetDeadline(time.Time{})
	return uc, nil
}

// Servers are the fast-path servers of a plugin process, one per gRPC server go-plugin has
// it register, shut down together when the plugin stops.
type Servers struct {
	mu   sync.Mutex
	list []*Server
}

// New returns a new Server, which Shutdown will shut down.
func (ss *Servers) New() *Server {
	s := newServer()
	ss.mu.Lock()
	ss.list = append(ss.list, s)
	ss.mu.Unlock()
	return s
}

// Shutdown shuts every server down (see Server.Shutdown): no new requests, those in
// progress answered.
func (ss *Servers) Shutdown() {
	ss.mu.Lock()
	list := ss.list
	ss.list = nil
	ss.mu.Unlock()
	for _, s := range list {
		s.Shutdown()
	}
}
