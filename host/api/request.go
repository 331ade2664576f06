package api

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// requestIDHeader carries the request id on every response (and is accepted from clients
// when it looks sane, so a caller can correlate).
const requestIDHeader = "X-Request-Id"

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts client-supplied ids of printable ASCII up to 128 bytes.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// errBadRequest is an input error shown to the client as 400.
type errBadRequest struct{ msg string }

func (e *errBadRequest) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &errBadRequest{msg: fmt.Sprintf(format, args...)}
}

// errUnsupportedMedia is a body in a format the API does not read (415).
type errUnsupportedMedia struct{ ct string }

func (e *errUnsupportedMedia) Error() string {
	return fmt.Sprintf("Content-Type %q is not accepted; send JSON (application/json)", e.ct)
}

// jsonContentType accepts JSON media types, none, text/plain, and curl's default for -d
// (application/x-www-form-urlencoded), whose bodies are read as JSON all the same: users
// type `curl -d '{...}'` and expect it to work.
func jsonContentType(ct string) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	switch {
	case mt == "", mt == "application/json", mt == "text/plain", mt == "application/x-www-form-urlencoded":
		return true
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
	if ct := r.Header.Get("Content-Type"); !jsonContentType(ct) {
		return &errUnsupportedMedia{ct: ct}
	}
	body, err := readBody(r)
	if err != nil {
		return jsonError(err)
	}
	return decodeBody(body, v, bounds)
}

// decodeBody is decodeBounded once the body is read.
func decodeBody(body []byte, v any, bounds map[string]int) error {
	// The body is one JSON object: not null, not an array, not a number.
	rest := bytes.TrimLeft(body, " \t\r\n")
	if len(rest) == 0 {
		return jsonError(io.EOF)
	}
	if rest[0] != '{' {
		return badRequest("request body must be a JSON object {…}")
	}
	// JSON text is UTF-8 (RFC 8259): encoding/json would put U+FFFD in place of each
	// invalid byte of a string, and the host would run and record text the client did not
	// send.
	if !utf8.Valid(rest) {
		return badRequest("request body is not valid UTF-8 (at byte %d); JSON text is UTF-8", len(body)-len(rest)+invalidUTF8At(rest))
	}
	// A field given twice would take its last value here and maybe its first elsewhere
	// (a proxy, a log): refused. Fields match as decoding matches them (foldName).
	k, dup, over := scanBody(rest, bounds, shapeOf(v).structs)
	if dup {
		return badRequest("field %q is given more than once", k)
	}
	if over != "" {
		return badRequest("field %q holds more than %d JSON values; send bulk data as one string", over, boundOf(bounds, foldName(over)))
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// Only whitespace may follow: what a second Decode would read as the end of the input.
	if len(bytes.TrimLeft(rest[dec.InputOffset():], " \t\r\n")) > 0 {
		return badRequest("request body has data after the JSON value")
	}
	return checkRequired(rest, v)
}

// invalidUTF8At returns the offset of the first byte of b that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checkRequired refuses a body that lacks a field its struct tags api:"required" (the
// OpenAPI document says so too), or gives it as an empty string, with "NAME is required":
// not a zero value going on to be judged as if sent ("" as a trace id answering 404). A
// number or list given, even zero or empty, is left for the handler to judge. Only fields
// left at their zero value are looked up, so a complete body costs nothing more.
func checkRequired(body []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	rv = rv.Elem()
	var keys map[string]bool
	for _, f := range shapeOf(v).required {
		fv := rv.Field(f.index)
		if !fv.IsZero() {
			continue
		}
		if fv.Kind() != reflect.String {
			if keys == nil {
				var m map[string]json.RawMessage
				_ = json.Unmarshal(body, &m)
				keys = map[string]bool{}
				for k := range m {
					keys[foldName(k)] = true
				}
			}
			if keys[f.folded] {
				continue
			}
		}
		return badRequest("%s is required", f.name)
	}
	return nil
}

// requiredField is a struct field tagged api:"required": its index and JSON name, and
// the name folded as decoding matches it (foldName).
type requiredField struct {
	index        int
	name, folded string
}

// bodyShape is what the body checks need of a request's struct type: its fields tagged
// api:"required", and the folded JSON names of its fields whose values are structs
// themselves (a session's limits), whose members decoding matches without case as it does
// the top level's, where a map's keys (params, data) are matched exactly.
type bodyShape struct {
	required []requiredField
	structs  map[string]bool
}

// shapesByType caches shapeOf by type.
var shapesByType sync.Map

// shapeOf returns the bodyShape of v's type, a struct or a pointer to one (else empty).
func shapeOf(v any) *bodyShape {
	t := reflect.TypeOf(v)
	if sh, ok := shapesByType.Load(t); ok {
		return sh.(*bodyShape)
	}
	sh := &bodyShape{structs: map[string]bool{}}
	st := t
	for st != nil && st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st != nil && st.Kind() == reflect.Struct {
		for i := range st.NumField() {
			f := st.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if f.Tag.Get("api") == "required" {
				sh.required = append(sh.required, requiredField{i, name, foldName(name)})
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if !f.Anonymous && ft.Kind() == reflect.Struct {
				sh.structs[foldName(name)] = true
			}
		}
	}
	shapesByType.Store(t, sh)
	return sh
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

// foldName folds a JSON member name as encoding/json does when it matches one to a struct
// field: without case, by Unicode simple folding, so "paramſ" (a long s) and "PARAMS"
// both name params.
func foldName(name string) string {
	ascii := true
	for i := 0; i < len(name) && ascii; i++ {
		ascii = name[i] < utf8.RuneSelf
	}
	if ascii {
		return strings.ToUpper(name) // the least rune of each ASCII letter's fold orbit
	}
	return strings.Map(func(r rune) rune {
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				return f
			}
			r = f
		}
	}, name)
}

// boundOf returns the bound of bounds (keyed by field name) for the field whose folded
// name (foldName) is folded, or 0.
func boundOf(bounds map[string]int, folded string) int {
	for k, n := range bounds {
		if foldName(k) == folded {
			return n
		}
	}
	return 0
}

// scanBody returns a field of the JSON object body that appears more than once in its
// object, as a path ("data.k", "params.list[2].x"): top-level fields, and the members of
// those whose value decodes into a struct (structs holds their folded names), compared as
// decoding matches them (foldName), other nested ones exactly (after unescaping). For
// each top-level field named in bounds it counts the JSON values in its value (every
// object, array, string, number, true, false and null) up to its bound: over is the first
// field found holding more, so a body is refused before it is decoded into a tree that
// would cost hundreds of bytes per value. It only scans: malformed JSON is left to the
// decoder to report.
func scanBody(body []byte, bounds map[string]int, structs map[string]bool) (dupPath string, dup bool, over string) {
	type frame struct {
		object bool
		// seen holds the object's names up to maxListed of them, then seenSet all of them:
		// most objects are small, and a list costs less than a map to fill and search.
		seen    []string
		seenSet map[string]struct{}
		name    string // the field (in an object) or index (in an array) being read
		index   int
		// fold: the object's names are matched as decoding into a struct matches them
		// (foldName), not exactly as a map's keys are.
		fold bool
	}
	const maxListed = 16
	var stackSpace [8]frame
	stack := stackSpace[:0]
	path := func(last string) string {
		var b strings.Builder
		for i, f := range stack {
			switch {
			case i == len(stack)-1 && f.object:
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(last)
			case f.object:
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.name)
			default:
				fmt.Fprintf(&b, "[%d]", f.index)
			}
		}
		return b.String()
	}
	// folded bounds by the folded name of their field; topKey is the folded name of the
	// top-level field being read.
	var folded map[string]int
	if len(bounds) > 0 {
		folded = make(map[string]int, len(bounds))
		for k, n := range bounds {
			folded[foldName(k)] = n
		}
	}
	topKey := ""
	expectKey := false
	// counted is the bound of the top-level field being read (0: not counted), count the
	// values seen in it, and scalar whether a number or literal is being read.
	counted, count, scalar := 0, 0, false
	value := func() bool {
		if counted > 0 && len(stack) > 0 {
			count++
			return count > counted
		}
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if scalar {
			if c != ',' && c != ']' && c != '}' && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				continue
			}
			scalar = false
		}
		switch c {
		case '{':
			if value() {
				return "", false, stack[0].name
			}
			stack = append(stack, frame{object: true, fold: len(stack) == 0 || len(stack) == 1 && stack[0].object && structs[topKey]})
			expectKey = true
		case '[':
			if value() {
				return "", false, stack[0].name
			}
			stack = append(stack, frame{})
		case '}', ']':
			if len(stack) == 0 {
				return "", false, ""
			}
			stack = stack[:len(stack)-1]
			expectKey = false
		case ',':
			if len(stack) == 0 {
				return "", false, ""
			}
			if top := &stack[len(stack)-1]; top.object {
				expectKey = true
			} else {
				top.index++
			}
		case ':', ' ', '\t', '\n', '\r':
		case '"':
			end, escaped := i+1, false
			for end < len(body) && body[end] != '"' {
				if body[end] == '\\' {
					escaped = true
					end++
				}
				end++
			}
			if end >= len(body) {
				return "", false, ""
			}
			if expectKey && len(stack) > 0 {
				key := string(body[i+1 : end])
				if escaped {
					if err := json.Unmarshal(body[i:end+1], &key); err != nil {
						return "", false, ""
					}
				}
				top := &stack[len(stack)-1]
				cmp := key
				if top.fold {
					cmp = foldName(key)
				}
				if len(stack) == 1 {
					topKey = cmp
					counted, count = folded[cmp], 0
				}
				if top.seenSet != nil {
					if _, dup := top.seenSet[cmp]; dup {
						return path(key), true, ""
					}
					top.seenSet[cmp] = struct{}{}
				} else {
					if slices.Contains(top.seen, cmp) {
						return path(key), true, ""
					}
					if len(top.seen) < maxListed {
						top.seen = append(top.seen, cmp)
					} else {
						top.seenSet = make(map[string]struct{}, 2*maxListed)
						for _, k := range top.seen {
							top.seenSet[k] = struct{}{}
						}
						top.seenSet[cmp] = struct{}{}
						top.seen = nil
					}
				}
				top.name = key
				expectKey = false
			} else if value() {
				return "", false, stack[0].name
			}
			i = end
		default: // a number, true, false or null
			scalar = true
			if value() {
				return "", false, stack[0].name
			}
		}
	}
	return "", false, ""
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
		return badRequest("field %q must be %s, got JSON %s", field, jsonKind(te.Type), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("invalid JSON: %v", err)
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
	if ct := r.Header.Get("Content-Type"); !jsonContentType(ct) {
		return &errUnsupportedMedia{ct: ct}
	}
	body, err := readBody(r)
	if err != nil {
		return jsonError(err)
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
	if _, dup, _ := scanBody(body, nil, nil); dup {
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
			body, err := readBody(r)
			if err != nil {
				s.fail(w, r, jsonError(err))
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
