package storagebench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// transportChildEnv makes the test binary serve the transports of BenchmarkTransport
// instead of running tests: its value is the directory of the two sockets.
const transportChildEnv = "LIMIT_STORAGEBENCH_TRANSPORT_CHILD"

// echoDesc is a gRPC service with a unary and a bidirectional-stream echo of bytes.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			m := new(wrapperspb.BytesValue)
			if err := dec(m); err != nil {
				return nil, err
			}
			return m, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName: "Bidi",
		Handler: func(_ any, st grpc.ServerStream) error {
			for {
				m := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(m); err != nil {
					return nil
				}
				if err := st.SendMsg(m); err != nil {
					return err
				}
			}
		},
		ServerStreams: true,
		ClientStreams: true,
	}},
}

// serveTransports is the child process: gRPC with mutual TLS (as go-plugin's AutoMTLS) on
// dir/grpc.sock, and a raw length-prefixed frame echo on dir/raw.sock.
func serveTransports(dir string) {
	cert, pool := mustCert(os.Getenv(transportChildEnv + "_PEM"))
	gl, err := net.Listen("unix", filepath.Join(dir, "grpc.sock"))
	if err != nil {
		panic(err)
	}
	rl, err := net.Listen("unix", filepath.Join(dir, "raw.sock"))
	if err != nil {
		panic(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})))
	s.RegisterService(&echoDesc, struct{}{})
	go func() { _ = s.Serve(gl) }()
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			go func() {
				r, w := bufio.NewReader(c), c
				var hdr [4]byte
				buf := make([]byte, 0, 4096)
				for {
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					n := binary.LittleEndian.Uint32(hdr[:])
					buf = append(buf[:0], hdr[:]...)
					buf = append(buf, make([]byte, n)...)
					if _, err := io.ReadFull(r, buf[4:]); err != nil {
						return
					}
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	// Exit with the parent.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// mustCert builds a TLS certificate and pool from a PEM bundle (key then cert).
func mustCert(bundle string) (tls.Certificate, *x509.CertPool) {
	cert, err := tls.X509KeyPair([]byte(bundle), []byte(bundle))
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(bundle))
	return cert, pool
}

// selfSigned returns a PEM bundle (key and certificate) valid for "localhost".
func selfSigned(tb testing.TB) string {
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// BenchmarkTransport measures one 100-byte request and its echo between two processes on
// this machine, four ways: a unary gRPC call over mutual TLS (what every plugin call costs
// today), a message on an already-open bidirectional gRPC stream over the same connection,
// a length-prefixed frame on a raw Unix socket, and that frame with its answer read by a
// goroutine of its own and handed to the caller. It prints p50 and p99 of each.
//
//	go test -run '^$' -bench BenchmarkTransport -benchtime 1x ./internal/storagebench
func BenchmarkTransport(b *testing.B) {
	dir, err := os.MkdirTemp("", "transport")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bundle := selfSigned(b)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), transportChildEnv+"="+dir, transportChildEnv+"_PEM="+bundle)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	for _, s := range []string{"grpc.sock", "raw.sock"} {
		for i := 0; ; i++ {
			if _, err := os.Stat(filepath.Join(dir, s)); err == nil {
				break
			}
			if i > 500 {
				b.Fatalf("child did not create %s", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cert, pool := mustCert(bundle)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "grpc.sock"), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	payload := &wrapperspb.BytesValue{Value: []byte(strings.Repeat("v", 100))}
	const n = 5000
	measure := func(name string, f func() error) string {
		for range 200 { // warm up
			if err := f(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
		}
		d := make([]time.Duration, n)
		for i := range d {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			d[i] = time.Since(t0)
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return fmt.Sprintf("%-34s p50 %7.1f µs  p99 %7.1f µs\n", name, micros(d[n/2]), micros(d[n*99/100]))
	}
	out := measure("unary gRPC (mTLS)", func() error {
		return conn.Invoke(ctx, "/bench.Echo/Unary", payload, new(wrapperspb.BytesValue))
	})
	st, err := conn.NewStream(ctx, &echoDesc.Streams[0], "/bench.Echo/Bidi")
	if err != nil {
		b.Fatal(err)
	}
	out += measure("message on open bidi stream (mTLS)", func() error {
		if err := st.SendMsg(payload); err != nil {
			return err
		}
		return st.RecvMsg(new(wrapperspb.BytesValue))
	})
	raw, err := net.Dial("unix", filepath.Join(dir, "raw.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	frame := binary.LittleEndian.AppendUint32(nil, 100)
	frame = append(frame, payload.Value...)
	back := make([]byte, len(frame))
	out += measure("raw Unix socket frame", func() error {
		if _, err := raw.Write(frame); err != nil {
			return err
		}
		_, err := io.ReadFull(raw, back)
		return err
	})
	// The same frame, its answer read by a goroutine of its own and handed to the caller
	// over a channel, as the fast path's client did before its calls read their own
	// answers: what that hand-off costs.
	raw2, err := net.Dial("unix", filepath.Join(dir, "raw.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw2.Close()
	answers := make(chan error, 1)
	go func() {
		in := make([]byte, len(frame))
		for {
			_, err := io.ReadFull(raw2, in)
			answers <- err
			if err != nil {
				return
			}
		}
	}()
	out += measure("raw frame, answer via a goroutine", func() error {
		if _, err := raw2.Write(frame); err != nil {
			return err
		}
		return <-answers
	})
	fmt.Fprintf(os.Stdout, "\nTransport round trip, 100-byte payload, %d sequential calls each:\n%s", n, out)
}
