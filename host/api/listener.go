package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// ProblemListener wraps the API's listener so that the answers net/http writes by itself,
// before any handler runs, are RFC 9457 problem+json with an X-Request-Id like every
// other answer of the API, not text/plain without one: a request line or header it cannot
// parse (a path with a bad escape such as /%zz, no Host header), headers over its limit
// (431), a transfer encoding it does not know (501), an Expect header other than
// 100-continue (417).
//
// net/http writes such an answer in one Write on the connection, in a fixed form
// (rewriteServerError), and closes it; the handlers' answers always carry X-Request-Id
// in their headers, and their bodies (JSON, problem+json, server-sent events of JSON,
// gzip) never hold that form's bare CR LF header lines, so no answer of a handler is
// taken for one. It wraps a plain TCP listener: net/http would not see TLS through it.
// Each rewritten answer is logged at warn level with its request id, status and the
// client's address, as the API logs the requests it refuses, and at the same bounded rate
// (refusedLog; nil logs nothing).
func ProblemListener(ln net.Listener, logger hclog.Logger) net.Listener {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return problemListener{ln, newRefusedLog(logger)}
}

type problemListener struct {
	net.Listener
	log *refusedLog
}

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return problemConn{c, l.log}, nil
}

type problemConn struct {
	net.Conn
	log *refusedLog
}

// CloseWrite half-closes the connection as net/http does before it closes one whose
// client may still be sending (431, 413), so the client reads the answer rather than a
// reset: it looks for this method on the connection it was given.
func (c problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c problemConn) Write(b []byte) (int, error) {
	if p, ok := rewriteServerError(b); ok {
		c.log.warn("API request refused by net/http", "request_id", p.id, "remote", c.RemoteAddr().String(), "status", p.status, "reason", p.detail)
		if _, err := c.Conn.Write(p.answer); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// serverErrorHeaders is what net/http (server.go, conn.serve) puts between the status
// line and the body of the answers it writes itself.
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// rewritten is the problem+json answer that replaces one of net/http's own.
type rewritten struct {
	answer []byte
	id     string
	status int
	detail string
}

// rewriteServerError returns the problem+json answer for b when b is a whole error answer
// net/http wrote by itself: "HTTP/1.1 CODE TEXT[: DETAIL]" + serverErrorHeaders + a
// short text body, CODE 400 to 599.
func rewriteServerError(b []byte) (rewritten, bool) {
	const proto = "HTTP/1.1 "
	// Every answer starts so; only a small one of status 4xx or 5xx is looked at further.
	if len(b) > 2048 || len(b) <= len(proto) || !bytes.HasPrefix(b, []byte(proto)) || (b[len(proto)] != '4' && b[len(proto)] != '5') {
		return rewritten{}, false
	}
	if isExpectationFailed(b) {
		return problemAnswer(http.StatusExpectationFailed, "the Expect header asks for what the server does not do: only \"100-continue\" is understood"), true
	}
	line, body, ok := bytes.Cut(b[len(proto):], []byte(serverErrorHeaders))
	if !ok || len(line) < 4 || line[3] != ' ' || bytes.ContainsAny(line, "\r\n") || bytes.ContainsAny(body, "\r\n") {
		return rewritten{}, false
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil || code < 400 || code > 599 {
		return rewritten{}, false
	}
	title := http.StatusText(code)
	// The body repeats the status line ("400 Bad Request: missing required Host header");
	// what follows the title is net/http's reason, when it gives one.
	detail := strings.TrimPrefix(strings.TrimPrefix(string(body), string(line[:4])), title)
	detail = strings.TrimSpace(strings.TrimPrefix(detail, ":"))
	switch {
	case code == http.StatusRequestHeaderFieldsTooLarge:
		detail = "the request's header is larger than the server accepts"
	case detail == "" && code == http.StatusBadRequest:
		detail = "the request line or a header could not be parsed (a path must be validly percent-encoded)"
	}
	return problemAnswer(code, detail), true
}

// isExpectationFailed reports whether b is the whole 417 answer net/http writes by itself
// to a request whose Expect header is not 100-continue: a status line, headers without the
// X-Request-Id every handler answer has, and no body.
func isExpectationFailed(b []byte) bool {
	const line = "HTTP/1.1 417 Expectation Failed\r\n"
	if !bytes.HasPrefix(b, []byte(line)) {
		return false
	}
	head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	return ok && len(rest) == 0 &&
		!bytes.Contains(bytes.ToLower(head), []byte("\r\n"+strings.ToLower(requestIDHeader)+":"))
}

// problemAnswer is a whole HTTP/1.1 answer of status code with a problem+json body of
// detail and a new request id, closing the connection.
func problemAnswer(code int, detail string) rewritten {
	title := http.StatusText(code)
	if title == "" {
		title = "Error"
	}
	p, _ := json.Marshal(Problem{Type: "about:blank", Title: title, Status: code, Detail: detail})
	p = append(p, '\n')
	id := newRequestID()
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\n%s: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		code, title, requestIDHeader, id, len(p))
	out.Write(p)
	return rewritten{answer: out.Bytes(), id: id, status: code, detail: detail}
}
