package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/session"
)

// decodeBody is decodeBounded once the body is read.
//
// encoding/json alone is lenient where the API must not be, so the body is scanned first
// (scanBody) against the shape of v's type (shapeOf): a member name must match a field's
// exactly (encoding/json matches without case), a field may be given once, a string may
// hold no lone surrogate escape (encoding/json puts U+FFFD in its place), null is refused
// for a required field and as an element of a list of non-nullable values (encoding/json
// reads it as the zero value), and a number read into an integer must be a whole number in
// the integer's range, written as 4 or as 4.0 or 4e0 (JSON Schema counts all three as
// integers; encoding/json refuses the last two).
func decodeBody(body []byte, v any, bounds map[string]int) error {
	rest, err := jsonText(body)
	if err != nil {
		return err
	}
	// The body is one JSON object: not null, not an array, not a number.
	if rest[0] != '{' {
		return badRequest("request body must be a JSON object {…}")
	}
	// JSON text is UTF-8 (RFC 8259): encoding/json would put U+FFFD in place of each
	// invalid byte of a string, and the host would run and record text the client did not
	// send.
	if !utf8.Valid(rest) {
		return badRequest("request body is not valid UTF-8 (at byte %d); JSON text is UTF-8", len(body)-len(rest)+invalidUTF8At(rest))
	}
	sh := shapeOf(reflect.TypeOf(v))
	rewrites, err := scanBody(rest, bounds, sh)
	if err != nil {
		return err
	}
	if len(rewrites) > 0 {
		rest = rewriteNumbers(rest, rewrites)
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

// jsonText returns body without the whitespace before its JSON value, or the error that
// tells a client why body is not JSON text: empty, or in UTF-16 or UTF-32. A UTF-8 byte
// order mark is skipped, as RFC 8259 §8.1 allows.
func jsonText(body []byte) ([]byte, error) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if enc := utf16Or32(body); enc != "" {
		return nil, badRequest("request body must be UTF-8 JSON; it looks like %s", enc)
	}
	rest := bytes.TrimLeft(body, " \t\r\n")
	if len(rest) == 0 {
		return nil, jsonError(io.EOF)
	}
	return rest, nil
}

// utf16Or32 names the encoding of a body that starts with a UTF-16 or UTF-32 byte order
// mark, or whose first character, ASCII as JSON's first is, has zero bytes beside it as in
// those encodings (RFC 4627 §3); "" otherwise.
func utf16Or32(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0, 0, 0xfe, 0xff}), len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] != 0:
		return "UTF-32 (big-endian)"
	case bytes.HasPrefix(b, []byte{0xff, 0xfe, 0, 0}), len(b) >= 4 && b[0] != 0 && b[1] == 0 && b[2] == 0 && b[3] == 0:
		return "UTF-32 (little-endian)"
	case bytes.HasPrefix(b, []byte{0xfe, 0xff}), len(b) >= 2 && b[0] == 0 && b[1] != 0:
		return "UTF-16 (big-endian)"
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}), len(b) >= 2 && b[0] != 0 && b[1] == 0:
		return "UTF-16 (little-endian)"
	}
	return ""
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
// number or list given, even zero or empty, is left for the handler to judge (a null was
// refused by scanBody). Only fields left at their zero value are looked up, so a complete
// body costs nothing more.
func checkRequired(body []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	rv = rv.Elem()
	var keys map[string]json.RawMessage
	for _, f := range shapeOf(reflect.TypeOf(v)).required {
		fv, err := rv.FieldByIndexErr(f.index)
		if err != nil || !fv.IsZero() {
			continue
		}
		if fv.Kind() != reflect.String {
			if keys == nil {
				_ = json.Unmarshal(body, &keys)
			}
			if _, ok := keys[f.name]; ok {
				continue
			}
		}
		return &errMissingField{field: f.name, bad: &errBadRequest{msg: f.name + " is required"}}
	}
	return nil
}

// errMissingField is a body that lacks a required field: a 400 as any errBadRequest (it
// unwraps to one); the RD routes, whose 400s name the field at fault, answer it with
// field.
type errMissingField struct {
	field string
	bad   *errBadRequest
}

func (e *errMissingField) Error() string { return e.bad.msg }

func (e *errMissingField) Unwrap() error { return e.bad }

// jsonShape is what the body checks know of the Go type a JSON value decodes into. A nil
// *jsonShape is a type that decodes itself (a json.Unmarshaler, an encoding.TextUnmarshaler,
// json.RawMessage, an interface): only what holds for any JSON text (no duplicates, no lone
// surrogates) is checked in its value.
type jsonShape struct {
	// kind is the type's kind, pointers removed; bits is an integer kind's size.
	kind reflect.Kind
	bits int
	// nullable tells that null is a value of the type (a pointer, slice or map, which null
	// leaves nil), not the zero value of one that cannot be null.
	nullable bool
	// fields are a struct's members by their exact JSON names (embedded structs' promoted);
	// folded maps each name's case fold to it, to name the field a miscased name meant;
	// required are the fields tagged api:"required".
	fields   map[string]*shapeField
	folded   map[string]string
	required []*shapeField
	// elem is a slice's, array's or map's element.
	elem *jsonShape
}

// shapeField is a struct member as JSON names it.
type shapeField struct {
	name     string
	index    []int // for reflect.Value.FieldByIndex
	shape    *jsonShape
	required bool
	// valid is what an integer field of a narrower range than its Go type's holds, from
	// integerRanges ("" for the type's range).
	valid string
}

// integerRanges are, by struct type and JSON name, the integer fields whose valid values
// are narrower than their Go type's, as the handler's own check refuses them: a number
// that is not whole or not in the type's range is then refused naming the field's range,
// not the type's (max_concurrency is from 1 to 1024, not from -2⁶³ to 2⁶³-1).
var integerRanges = map[reflect.Type]map[string]string{
	reflect.TypeFor[session.CreateRequest](): {
		"max_concurrency": fmt.Sprintf("from 1 to %d", session.MaxMaxConcurrency),
	},
	reflect.TypeFor[execution.Request](): {
		"timeout_ms": fmt.Sprintf("from 0 to %d (an hour; 0 for the session's or the runner's)", session.MaxTimeoutMS),
	},
	reflect.TypeFor[session.Limits](): {
		"timeout_ms":     fmt.Sprintf("from 0 to %d", session.MaxTimeoutMS),
		"memory_bytes":   fmt.Sprintf("from %d (64 MiB) to %d (1 TiB), or 0 for the runner's default", uint64(session.MinMemoryBytes), uint64(session.MaxMemoryBytes)),
		"max_disk_bytes": fmt.Sprintf("from %d (8 MiB) to %d (1 TiB), or 0 for the runner's default", uint64(session.MinDiskBytes), uint64(session.MaxDiskBytes)),
	},
}

// shapesByType caches shapeOf by type.
var shapesByType sync.Map

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// shapeOf returns the jsonShape of t (nil for a type that decodes itself, or nil t).
func shapeOf(t reflect.Type) *jsonShape {
	if t == nil {
		return nil
	}
	if sh, ok := shapesByType.Load(t); ok {
		return sh.(*jsonShape)
	}
	building := map[reflect.Type]*jsonShape{}
	sh := buildShape(t, building)
	for bt, bsh := range building {
		shapesByType.LoadOrStore(bt, bsh)
	}
	return sh
}

func buildShape(t reflect.Type, building map[reflect.Type]*jsonShape) *jsonShape {
	if sh, ok := building[t]; ok {
		return sh
	}
	if sh, ok := shapesByType.Load(t); ok {
		return sh.(*jsonShape)
	}
	nullable := false
	base := t
	for base.Kind() == reflect.Pointer {
		base, nullable = base.Elem(), true
	}
	for _, x := range []reflect.Type{t, base, reflect.PointerTo(base)} {
		if x.Implements(unmarshalerType) || x.Implements(textUnmarshalerType) {
			building[t] = nil
			return nil
		}
	}
	sh := &jsonShape{kind: base.Kind(), nullable: nullable}
	building[t] = sh
	switch base.Kind() {
	case reflect.Interface:
		building[t] = nil
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		sh.bits = base.Bits()
	case reflect.Slice, reflect.Map:
		sh.nullable = true
		sh.elem = buildShape(base.Elem(), building)
	case reflect.Array:
		sh.elem = buildShape(base.Elem(), building)
	case reflect.Struct:
		sh.fields, sh.folded = map[string]*shapeField{}, map[string]string{}
		addFields(sh, base, nil, building)
		for _, f := range sh.fields {
			sh.folded[foldName(f.name)] = f.name
			if f.required {
				sh.required = append(sh.required, f)
			}
		}
		slices.SortFunc(sh.required, func(a, b *shapeField) int { return slices.Compare(a.index, b.index) })
	}
	return sh
}

// addFields adds t's members to sh as encoding/json names them: the tag's name or the
// field's, none for "-" or an unexported field; an untagged embedded struct's members are
// promoted, unless a shallower field has their name.
func addFields(sh *jsonShape, t reflect.Type, index []int, building map[reflect.Type]*jsonShape) {
	var embedded []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, f)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := sh.fields[name]; ok {
			continue
		}
		fs := &shapeField{name: name, index: append(slices.Clone(index), i), required: f.Tag.Get("api") == "required", valid: integerRanges[t][name]}
		if !slices.Contains(strings.Split(opts, ","), "string") { // ",string": a number or bool quoted, read as given
			fs.shape = buildShape(f.Type, building)
		}
		sh.fields[name] = fs
	}
	for _, f := range embedded {
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		addFields(sh, ft, append(slices.Clone(index), f.Index...), building)
	}
}

// foldName folds a JSON member name as encoding/json does when it matches one to a struct
// field (without case, by Unicode simple folding, so "paramſ" with a long s and "PARAMS"
// both fold as params): the API matches names exactly, and uses it only to name the field
// a miscased name meant.
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

// numberRewrite replaces body[start:end], an integer written as a decimal (4.0, 1e3), by
// its plain form for encoding/json, which reads only that into a Go integer.
type numberRewrite struct {
	start, end int
	text       string
}

// rewriteNumbers returns a copy of body with its rewrites (in order) applied.
func rewriteNumbers(body []byte, rewrites []numberRewrite) []byte {
	out := make([]byte, 0, len(body))
	at := 0
	for _, rw := range rewrites {
		out = append(out, body[at:rw.start]...)
		out = append(out, rw.text...)
		at = rw.end
	}
	return append(out, body[at:]...)
}

// scanBody checks the JSON object body against root, the shape of the type it decodes
// into, before it is decoded, and returns the rewrites that integers written as decimals
// need (see decodeBody). Its errors name the field as a path ("data.k",
// "params.list[2].x"):
//
//   - a name given twice in one object, compared exactly (after unescaping);
//   - a name that is no field of the struct its object decodes into (with the field it
//     meant if it differs only in case);
//   - a lone surrogate escape (\ud800 not followed by \udc00-\udfff, or the latter alone)
//     in any string or name;
//   - null for a required field, or as an element of a list or map whose elements cannot
//     be null;
//   - a number read into an integer that is not a whole number in its range;
//   - for each top-level field named in bounds, more JSON values in its value (every
//     object, array, string, number, true, false and null) than its bound, so a body is
//     refused before it is decoded into a tree that would cost hundreds of bytes per value.
//
// It only scans: malformed JSON is left to the decoder to report.
func scanBody(body []byte, bounds map[string]int, root *jsonShape) ([]numberRewrite, error) {
	type frame struct {
		object bool
		// seen holds the object's names up to maxListed of them, then seenSet all of them:
		// most objects are small, and a list costs less than a map to fill and search.
		seen    []string
		seenSet map[string]struct{}
		name    string // the field (in an object) or index (in an array) being read
		index   int
		// shape is the struct, map, slice or array this object or array decodes into (nil:
		// unchecked); member and elem are the struct field and the shape of the object's
		// member being read.
		shape  *jsonShape
		member *shapeField
		elem   *jsonShape
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
	// here is the path of the value being read.
	here := func() string {
		if top := stack[len(stack)-1]; top.object {
			return path(top.name)
		}
		return path("")
	}
	// valueShape is the shape of the value being read, and the struct field it is the
	// value of (nil for an element).
	valueShape := func() (*jsonShape, *shapeField) {
		if len(stack) == 0 {
			return root, nil
		}
		top := &stack[len(stack)-1]
		if top.object {
			return top.elem, top.member
		}
		if top.shape != nil {
			return top.shape.elem, nil
		}
		return nil, nil
	}
	expectKey := false
	// counted is the bound of the top-level field being read (0: not counted), count the
	// values seen in it.
	counted, count := 0, 0
	overBound := func() error {
		return badRequest("field %q holds more than %d JSON values; send bulk data as one string", stack[0].name, counted)
	}
	value := func() bool {
		if counted > 0 && len(stack) > 0 {
			count++
			return count > counted
		}
		return false
	}
	var rewrites []numberRewrite
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch c {
		case '{', '[':
			if value() {
				return nil, overBound()
			}
			sh, _ := valueShape()
			if sh != nil && (c == '{' && sh.kind != reflect.Struct && sh.kind != reflect.Map ||
				c == '[' && sh.kind != reflect.Slice && sh.kind != reflect.Array) {
				sh = nil // the wrong kind of value: the decoder says so
			}
			stack = append(stack, frame{object: c == '{', shape: sh})
			expectKey = c == '{'
		case '}', ']':
			if len(stack) == 0 {
				return nil, nil
			}
			stack = stack[:len(stack)-1]
			expectKey = false
			if len(stack) == 0 {
				return rewrites, nil // what follows is the decoder's to refuse
			}
		case ',':
			if len(stack) == 0 {
				return nil, nil
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
				return nil, nil
			}
			if escaped {
				if r, ok := loneSurrogate(body[i+1 : end]); ok {
					what := "field " + strconv.Quote(here())
					if expectKey && len(stack) > 0 {
						what = "the name of field " + strconv.Quote(path(string(body[i+1:end])))
					}
					return nil, badRequest("%s holds a lone surrogate \\u%04x; JSON text is Unicode, where a character past U+FFFF is escaped as a pair (\\ud83d\\ude00)", what, r)
				}
			}
			if expectKey && len(stack) > 0 {
				key := string(body[i+1 : end])
				if escaped {
					if err := json.Unmarshal(body[i:end+1], &key); err != nil {
						return nil, nil
					}
				}
				top := &stack[len(stack)-1]
				if len(stack) == 1 {
					counted, count = bounds[key], 0
				}
				if top.seenSet != nil {
					if _, dup := top.seenSet[key]; dup {
						return nil, badRequest("field %q is given more than once", path(key))
					}
					top.seenSet[key] = struct{}{}
				} else {
					if slices.Contains(top.seen, key) {
						return nil, badRequest("field %q is given more than once", path(key))
					}
					if len(top.seen) < maxListed {
						top.seen = append(top.seen, key)
					} else {
						top.seenSet = make(map[string]struct{}, 2*maxListed)
						for _, k := range top.seen {
							top.seenSet[k] = struct{}{}
						}
						top.seenSet[key] = struct{}{}
						top.seen = nil
					}
				}
				top.name, top.member, top.elem = key, nil, nil
				switch sh := top.shape; {
				case sh == nil:
				case sh.kind == reflect.Struct:
					f := sh.fields[key]
					if f == nil {
						if meant, ok := sh.folded[foldName(key)]; ok {
							return nil, badRequest("unknown field %q; field names are case-sensitive: did you mean %q?", path(key), path(meant))
						}
						return nil, badRequest("unknown field %q", path(key))
					}
					top.member, top.elem = f, f.shape
				default: // a map
					top.elem = sh.elem
				}
				expectKey = false
			} else if value() {
				return nil, overBound()
			}
			i = end
		default: // a number, true, false or null
			end := i + 1
			for end < len(body) && !endsScalar(body[end]) {
				end++
			}
			if value() {
				return nil, overBound()
			}
			if len(stack) > 0 {
				tok := body[i:end]
				sh, member := valueShape()
				switch {
				case string(tok) == "null":
					if member != nil && member.required {
						return nil, badRequest("%s is required and must not be null", here())
					}
					if member == nil && sh != nil && !sh.nullable {
						return nil, badRequest("field %q must not be null", here())
					}
				case sh != nil && sh.bits > 0 && (c == '-' || c >= '0' && c <= '9'):
					text, err := integerIn(tok, sh, member)
					if err != "" {
						return nil, badRequest("field %q must be %s, got %s", here(), err, tok)
					}
					if text != string(tok) {
						rewrites = append(rewrites, numberRewrite{i, end, text})
					}
				}
			}
			i = end - 1
		}
	}
	return rewrites, nil
}

// endsScalar reports whether c ends a number or literal.
func endsScalar(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// integerIn returns the JSON number tok as a plain integer of sh's kind, or what it must be
// instead (a whole number within the field's range, when member has one narrower than the
// kind's, else the kind's); a tok that is no JSON number is given back as it is, for the
// decoder to report.
func integerIn(tok []byte, sh *jsonShape, member *shapeField) (text, mustBe string) {
	signed := sh.kind >= reflect.Int && sh.kind <= reflect.Int64
	switch {
	case member != nil && member.valid != "":
		mustBe = "a whole number " + member.valid
	case signed:
		mustBe = "a whole number from " + strconv.FormatInt(-1<<(sh.bits-1), 10) + " to " + strconv.FormatInt(1<<(sh.bits-1)-1, 10)
	default:
		mustBe = "a whole number from 0 to " + strconv.FormatUint(1<<sh.bits-1, 10)
	}
	text, whole, ok := wholeNumber(tok)
	switch {
	case !ok:
		return string(tok), ""
	case !whole || text == "":
		return "", mustBe
	case signed:
		if _, err := strconv.ParseInt(text, 10, sh.bits); err != nil {
			return "", mustBe
		}
	default:
		if _, err := strconv.ParseUint(text, 10, sh.bits); err != nil {
			return "", mustBe
		}
	}
	return text, ""
}

// wholeNumber reads the JSON number tok (ok false when it is none) and reports whether it
// is a whole number; text is then that number as a plain integer ("0" for any zero), or ""
// when it has more digits than any Go integer.
func wholeNumber(tok []byte) (text string, whole, ok bool) {
	s := string(tok)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	digitsAt := func(s string) int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		return n
	}
	n := digitsAt(s)
	if n == 0 || n > 1 && s[0] == '0' {
		return "", false, false
	}
	intPart, frac := s[:n], ""
	s = s[n:]
	if strings.HasPrefix(s, ".") {
		n = digitsAt(s[1:])
		if n == 0 {
			return "", false, false
		}
		frac, s = s[1:1+n], s[1+n:]
	}
	exp := 0
	if s != "" && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		expNeg := strings.HasPrefix(s, "-")
		if expNeg || strings.HasPrefix(s, "+") {
			s = s[1:]
		}
		n = digitsAt(s)
		if n == 0 || n != len(s) {
			return "", false, false
		}
		e, err := strconv.Atoi(s)
		if err != nil || e > 1e6 {
			e = 1e6 // far past any integer's digits, and far below int's range
		}
		if exp = e; expNeg {
			exp = -e
		}
		s = ""
	}
	if s != "" {
		return "", false, false
	}
	// The value is 0.digits × 10^point.
	digits, point := strings.TrimLeft(intPart+frac, "0"), len(intPart)+exp
	point -= len(intPart+frac) - len(strings.TrimLeft(intPart+frac, "0"))
	digits = strings.TrimRight(digits, "0")
	switch {
	case digits == "":
		return "0", true, true
	case point < len(digits):
		return "", false, true
	case point > 30:
		return "", true, true
	}
	text = digits + strings.Repeat("0", point-len(digits))
	if neg {
		text = "-" + text
	}
	return text, true, true
}

// loneSurrogate returns the first lone surrogate escape in s, the inside of a JSON string:
// a \ud800-\udbff not followed by a \udc00-\udfff, or the latter alone. Malformed escapes
// are left to the decoder.
func loneSurrogate(s []byte) (rune, bool) {
	hex4 := func(at int) (rune, bool) {
		if at+4 > len(s) {
			return 0, false
		}
		n, err := strconv.ParseUint(string(s[at:at+4]), 16, 32)
		return rune(n), err == nil
	}
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if s[i+1] != 'u' {
			i++
			continue
		}
		r, ok := hex4(i + 2)
		if !ok {
			return 0, false
		}
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return r, true
		case r >= 0xd800 && r < 0xdc00:
			if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				if r2, ok := hex4(i + 8); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
					i += 11
					continue
				}
			}
			return r, true
		}
		i += 5
	}
	return 0, false
}
