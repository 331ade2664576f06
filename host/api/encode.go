package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/limitgraph/limit/host/trace"
)

// writeRecord answers with a trace record, byte for byte as writeJSON would, but written
// directly in the common case (a record without flags, as a create returns it, with plain
// strings and canonical data): no reflection, and no second pass to indent it. Anything
// else goes through writeJSON.
func writeRecord(w http.ResponseWriter, status int, rec *trace.Record) {
	bp := answerBuffers.Get().(*[]byte)
	defer answerBuffers.Put(bp)
	b, ok := appendRecord((*bp)[:0], rec)
	if !ok {
		writeJSON(w, status, rec)
		return
	}
	if cap(b) <= maxPooledAnswer {
		*bp = b
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// maxPooledAnswer bounds the buffers answerBuffers keeps, so one large answer does not pin
// its memory.
const maxPooledAnswer = 64 << 10

// answerBuffers holds the buffers direct answers are written into.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendRecord appends rec as json.Encoder with SetIndent("", "  ") writes it (HTML
// characters escaped, a final newline), and reports whether it could: false for a record
// with flags, with a string that is not plain printable ASCII, a timestamp outside years
// 0–9999, or data that is not compact JSON.
func appendRecord(b []byte, rec *trace.Record) ([]byte, bool) {
	if len(rec.Flags) > 0 || len(rec.Data) == 0 || !jsonTime(rec.CreatedAt) || !jsonTime(rec.UpdatedAt) ||
		!plainString(rec.ID) || !plainString(rec.SessionID) || !plainString(rec.Tenant) || !plainString(rec.Kind) ||
		!plainString(string(rec.Status)) || !plainString(rec.Head) {
		return b, false
	}
	b = appendMember(b, "{\n  ", "id", rec.ID)
	b = appendMember(b, ",\n  ", "session_id", rec.SessionID)
	b = appendMember(b, ",\n  ", "tenant", rec.Tenant)
	b = appendMember(b, ",\n  ", "kind", rec.Kind)
	b = appendMember(b, ",\n  ", "status", string(rec.Status))
	b = append(b, ",\n  \"data\": "...)
	b, ok := appendIndented(b, rec.Data, 1)
	if !ok {
		return b, false
	}
	if rec.Flags == nil {
		b = append(b, ",\n  \"flags\": null"...)
	} else {
		b = append(b, ",\n  \"flags\": []"...)
	}
	b = append(b, ",\n  \"created_at\": \""...)
	b = append(rec.CreatedAt.AppendFormat(b, time.RFC3339Nano), '"')
	b = append(b, ",\n  \"updated_at\": \""...)
	b = append(rec.UpdatedAt.AppendFormat(b, time.RFC3339Nano), '"')
	b = append(b, ",\n  \"provenance_length\": "...)
	b = strconv.AppendInt(b, rec.Length, 10)
	b = appendMember(b, ",\n  ", "provenance_head", rec.Head)
	return append(b, "\n}\n"...), true
}

// appendMember appends sep, then "name": "value" (a plainString).
func appendMember(b []byte, sep, name, value string) []byte {
	b = append(b, sep...)
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `": "`...)
	b = append(b, value...)
	return append(b, '"')
}

// plainString tells whether encoding/json writes s as it is between quotes: printable ASCII
// without the characters it escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// jsonTime tells whether time.Time.MarshalJSON writes t as RFC 3339 with nanoseconds,
// which it does for years 0–9999.
func jsonTime(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}

// appendIndented appends the compact JSON value v (no whitespace outside strings, as
// canonical JSON is) as encoding/json's indenting encoder writes a json.RawMessage nested
// depth levels deep: two spaces per level, ": " after names, empty objects and arrays kept
// as {} and [], and '<', '>', '&', U+2028 and U+2029 escaped. It reports false for
// whitespace, a control character in a string or an unterminated string, which it
// leaves to encoding/json.
func appendIndented(b []byte, v []byte, depth int) ([]byte, bool) {
	const hex = "0123456789abcdef"
	needIndent := false
	newline := func(b []byte, depth int) []byte {
		b = append(b, '\n')
		for range depth {
			b = append(b, ' ', ' ')
		}
		return b
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if needIndent && c != '}' && c != ']' {
			needIndent = false
			depth++
			b = newline(b, depth)
		}
		switch c {
		case '"':
			b = append(b, '"')
			i++
			start := i
			for ; i < len(v) && v[i] != '"'; i++ {
				switch c := v[i]; {
				case c == '\\':
					i++ // the escaped character is copied with the run
				case c < 0x20:
					return b, false // encoding/json refuses it
				case c == '<' || c == '>' || c == '&':
					b = append(b, v[start:i]...)
					b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
					start = i + 1
				case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
					b = append(b, v[start:i]...)
					b = append(b, '\\', 'u', '2', '0', '2', hex[v[i+2]&0xF])
					i += 2
					start = i + 1
				}
			}
			if i >= len(v) {
				return b, false
			}
			b = append(b, v[start:i]...)
			b = append(b, '"')
		case '{', '[':
			needIndent = true
			b = append(b, c)
		case ',':
			b = newline(append(b, c), depth)
		case ':':
			b = append(b, c, ' ')
		case '}', ']':
			if needIndent {
				needIndent = false
			} else {
				depth--
				b = newline(b, depth)
			}
			b = append(b, c)
		case ' ', '\t', '\n', '\r':
			return b, false
		default:
			b = append(b, c)
		}
	}
	return b, true
}
