package api

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/trace"
)

// requestIDHeader carries the request id on every response. The id is always the host's
// own (newRequestID), never one a client sent: a user could otherwise reuse another's id,
// and the log would hold two users' lines under it. An id the client sent is logged beside
// it as client_request_id (clientRequestID), for the client to correlate.
const requestIDHeader = "X-Request-Id"

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxClientRequestIDBytes bounds the client's X-Request-Id as the log keeps it.
const maxClientRequestIDBytes = 128

// clientRequestID is the X-Request-Id r's client sent, as the log keeps it: its first
// maxClientRequestIDBytes bytes, each byte outside printable ASCII (a control character,
// a space, a byte of a multi-byte character) replaced by '?', so that it cannot break or
// forge a log line; "" when it sent none.
func clientRequestID(r *http.Request) string {
	v := r.Header.Get(requestIDHeader)
	if len(v) > maxClientRequestIDBytes {
		v = v[:maxClientRequestIDBytes]
	}
	b := []byte(v)
	for i, c := range b {
		if c < 0x21 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// requestIDs are the arguments that name a request in a log line: the host's id, and the
// one the client sent (client_request_id) if any.
func requestIDs(id string, r *http.Request) []any {
	args := []any{"request_id", id}
	if c := clientRequestID(r); c != "" {
		args = append(args, "client_request_id", c)
	}
	return args
}

// errBadRequest is an input error shown to the client as 400.
type errBadRequest struct{ msg string }

func (e *errBadRequest) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &errBadRequest{msg: fmt.Sprintf(format, args...)}
}

// errUnsupportedMedia is a body in a format the API does not read (415): of a media type
// (ct) or, when encoding is set, in a content coding it does not undo. browser says the
// type was refused only because a browser sent it (see jsonContentType).
type errUnsupportedMedia struct {
	ct, encoding string
	browser      bool
}

func (e *errUnsupportedMedia) Error() string {
	if e.encoding != "" {
		return fmt.Sprintf("Content-Encoding %q is not accepted; send the body uncompressed (identity)", e.encoding)
	}
	if e.browser {
		return fmt.Sprintf("Content-Type %q is not accepted from a browser (a request with Origin or Sec-Fetch-Mode), the form a cross-site page sends without asking; send JSON (application/json)", e.ct)
	}
	return fmt.Sprintf("Content-Type %q is not accepted; send JSON (application/json)", e.ct)
}

// checkBodyHeaders refuses a body whose Content-Type is not JSON (see jsonContentType) or
// whose Content-Encoding is not identity (checkEncoding).
func checkBodyHeaders(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	browser := fromBrowser(r)
	if !jsonContentType(ct, browser) {
		return &errUnsupportedMedia{ct: ct, browser: browser && jsonContentType(ct, false)}
	}
	return checkEncoding(r)
}

// fromBrowser reports whether r carries the headers only a browser sends: Origin (on
// every POST, PUT, PATCH and DELETE) or Sec-Fetch-Mode (on every request of a current
// browser). curl, limitctl and the SDK send neither.
func fromBrowser(r *http.Request) bool {
	return r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Mode") != ""
}

// checkEncoding refuses a body whose Content-Encoding is not identity: the API reads
// bodies as they come, and a gzip'd one would otherwise be called malformed JSON.
func checkEncoding(r *http.Request) error {
	for _, v := range r.Header.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return &errUnsupportedMedia{encoding: c}
			}
		}
	}
	return nil
}

// jsonContentType accepts JSON media types, none, text/plain, and curl's default for -d
// (application/x-www-form-urlencoded), whose bodies are read as JSON all the same: users
// type `curl -d '{...}'` and expect it to work. From a browser (see fromBrowser) it
// accepts JSON media types and none only: text/plain and a form are what a cross-site
// page may POST without a CORS preflight, so refusing them is the standard defence
// against cross-site request forgery, beside the Origin check (foreignHost), which
// api.allowed_hosts = ["*"] turns off.
func jsonContentType(ct string, browser bool) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	switch {
	case mt == "", mt == "application/json":
		return true
	case mt == "text/plain", mt == "application/x-www-form-urlencoded":
		return !browser
	case strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}

// decodeJSON reads a JSON request body into v, refusing unknown fields, trailing data and
// bodies over the limit. Errors say where the problem is.
func decodeJSON(r *http.Request, v any) error {
	return decodeBounded(r, v, nil)
}

// decodeBounded is decodeJSON that also refuses a body whose top-level field named in
// bounds holds more JSON values than its bound, before decoding anything.
func decodeBounded(r *http.Request, v any, bounds map[string]int) error {
	if err := checkBodyHeaders(r); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return bodyReadError(err)
	}
	return decodeBody(body, v, bounds)
}

// readBody reads a request body whole, in one allocation of its declared length when it
// declares one (the body's reader still bounds what is read).
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= 64<<10 {
		b := make([]byte, 0, n+1) // one more byte, so that reaching the end needs no growth
		for {
			m, err := r.Body.Read(b[len(b):cap(b)])
			b = b[:len(b)+m]
			if err == io.EOF {
				return b, nil
			}
			if err != nil {
				return b, err
			}
			if len(b) == cap(b) {
				// Longer than declared (net/http does not allow that, other callers might):
				// read the rest as io.ReadAll does.
				rest, err := io.ReadAll(r.Body)
				return append(b, rest...), err
			}
		}
	}
	return io.ReadAll(r.Body)
}

// errBodyTimeout is a request body that did not arrive within api.read_timeout (408).
type errBodyTimeout struct{}

func (*errBodyTimeout) Error() string {
	return "the request body was not received within api.read_timeout; send it whole and at once, or raise api.read_timeout"
}

// bodyReadError is the error to answer for err, an error reading a request body (not
// decoding it): over max_body_bytes (413), not received in time (408), or a 400 that names
// the failure without the connection's addresses, which net/http's errors quote.
func bodyReadError(err error) error {
	var (
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &errBodyTimeout{}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body ended before its declared length (Content-Length) or its last chunk")
	case strings.Contains(err.Error(), "chunk"):
		// net/http's chunked reader: "invalid byte in chunk length", "malformed chunked
		// encoding", "http chunk length too large", "chunked encoding contains too much
		// non-data" (its errors are not exported).
		return badRequest("malformed chunked body (Transfer-Encoding: chunked): %v", err)
	}
	return badRequest("the request body could not be read")
}

func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty; a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is truncated JSON")
	case errors.As(err, &se):
		return badRequest("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		if k := kindOf(te.Type); (k == reflect.Float64 || k == reflect.Float32) && strings.HasPrefix(te.Value, "number ") {
			// A number encoding/json could not fit: 1e400 is a number, but out of range.
			return badRequest("field %q is out of range: %s is beyond the largest number a float64 holds (about 1.8e308)", field, strings.TrimPrefix(te.Value, "number "))
		}
		return badRequest("field %q must be %s, got JSON %s", field, jsonKind(te.Type), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("invalid JSON: %v", err)
}

// kindOf is t's kind, through pointers (Invalid for nil).
func kindOf(t reflect.Type) reflect.Kind {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return reflect.Invalid
	}
	return t.Kind()
}

// jsonKind names what a Go type accepts in JSON terms, for error messages (never the Go
// type's own name).
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a different JSON value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number ≥ 0"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	}
	return "a different JSON value"
}

// upperULID returns s in upper case when it is a ULID written in lower or mixed case
// (ULIDs are case-insensitive; the host writes and stores them in upper case), else s.
func upperULID(s string) string {
	if len(s) != 26 {
		return s
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			if u := strings.ToUpper(s); trace.ValidID(u) {
				return u
			}
			return s
		}
	}
	return s
}

// queryOnce returns the query parameter name of r ("" when absent), refusing one given
// more than once: which of per_page=1&per_page=2 a server reads differs from one to the
// next, and a proxy in between may read the other.
func queryOnce(r *http.Request, name string) (string, error) {
	vs := r.URL.Query()[name]
	if len(vs) > 1 {
		return "", badRequest("query parameter %s is given %d times; give it once", name, len(vs))
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}

// queryBool reads an optional true/false query parameter (false when absent).
func queryBool(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, badRequest("query parameter %s must be true or false, got %q", name, v)
	}
}

// queryInt reads an optional integer query parameter within [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("query parameter %s must be an integer between %d and %d, got %q", name, lo, hi, s)
	}
	return n, nil
}

// decodeCreateTrace reads the body of POST /v1/traces into req as decodeJSON does, with the
// same answer for every body; a plain one (the members session_id, data and agent, spelled
// so, at most once each, strings without escapes or non-ASCII) is read directly instead of
// through encoding/json's reflection, anything else by decodeJSON's own path.
func decodeCreateTrace(r *http.Request, req *createTraceRequest) error {
	if err := checkBodyHeaders(r); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return bodyReadError(err)
	}
	if parseCreateTrace(body, req) {
		return checkRequired(body, req)
	}
	return decodeBody(body, req, nil)
}

// parseCreateTrace reads a plain createTraceRequest body (see decodeCreateTrace) into req
// and reports whether it could; when it could not, req is unchanged. Its result is what
// decoding the body with encoding/json gives: every member's value is checked as JSON, a
// duplicate anywhere is left to decodeBody to report, and data is the bytes of its value.
func parseCreateTrace(body []byte, req *createTraceRequest) bool {
	var got createTraceRequest
	var seen [3]bool
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			name, j, ok := plainJSONString(body, i)
			if !ok {
				return false
			}
			i = skipSpace(body, j)
			if i >= len(body) || body[i] != ':' {
				return false
			}
			i = skipSpace(body, i+1)
			var member int
			switch string(name) {
			case "session_id", "agent":
				v, j, ok := plainJSONString(body, i)
				if !ok {
					return false
				}
				member, i = 0, j
				if string(name) == "session_id" {
					got.SessionID = string(v)
				} else {
					member, got.Agent = 1, string(v)
				}
			case "data":
				j := valueEnd(body, i)
				if j <= i || body[i] == 'n' || !json.Valid(body[i:j]) || !utf8.Valid(body[i:j]) {
					return false // null is left to encoding/json, with everything else unusual
				}
				member, got.Data, i = 2, json.RawMessage(body[i:j]), j
			default:
				return false
			}
			if seen[member] {
				return false
			}
			seen[member] = true
			i = skipSpace(body, i)
			if i < len(body) && body[i] == ',' {
				i = skipSpace(body, i+1)
				continue
			}
			if i < len(body) && body[i] == '}' {
				i++
				break
			}
			return false
		}
	}
	if skipSpace(body, i) != len(body) {
		return false
	}
	// Whatever decodeBody would refuse (a duplicate anywhere, a lone surrogate) is left to
	// it to report.
	if _, err := scanBody(body, nil, shapeOf(reflect.TypeFor[*createTraceRequest]())); err != nil {
		return false
	}
	*req = got
	return true
}

// skipSpace returns the index of the first byte from i on that is not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONString reads the JSON string at b[i] when it holds only printable ASCII without
// escapes, and returns its content and the index past it.
func plainJSONString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// valueEnd returns the index just past the JSON value that starts at b[i], as far as its
// brackets and strings say (json.Valid checks the rest), or -1 if it does not end.
func valueEnd(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch c := b[j]; c {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return -1
			}
			if depth == 0 {
				return j + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j // the end of the enclosing object: a scalar ends here
			}
			if depth--; depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
	}
	if depth == 0 {
		return len(b)
	}
	return -1
}

// noBody wraps the handler of a route that takes no body: an empty body, or an empty JSON
// object, is the call; anything else (malformed JSON, fields the route does not have) is a
// 400, as a body with unknown fields is on the routes that take one, rather than silently
// ignored.
func noBody(s *Server, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			if err := checkEncoding(r); err != nil {
				s.fail(w, r, err)
				return
			}
			body, err := readBody(r)
			if err != nil {
				s.fail(w, r, bodyReadError(err))
				return
			}
			if len(bytes.TrimSpace(body)) > 0 {
				if err := decodeBody(body, &struct{}{}, nil); err != nil {
					s.fail(w, r, err)
					return
				}
			}
		}
		h(w, r)
	}
}
