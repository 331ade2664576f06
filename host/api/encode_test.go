package api

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/trace"
)

// TestWriteRecord: writeRecord answers byte for byte as writeJSON does, whether it writes
// the record directly or falls back to encoding/json.
func TestWriteRecord(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 42, 43, 123456789, time.UTC)
	base := trace.Record{
		ID: "01KBF3Q6J6W1Y9M8N3V8X2Z4AB", SessionID: "01KBF3Q6J6W1Y9M8N3V8X2Z4CD", Tenant: "default",
		Kind: trace.TraceCustom, Status: trace.StatusActive, Data: json.RawMessage(`{"i":1,"payload":"benchmark trace"}`),
		Flags: []trace.Flag{}, CreatedAt: at, UpdatedAt: at, Length: 1, Head: "ab12",
	}
	with := func(f func(r *trace.Record)) trace.Record {
		r := base
		f(&r)
		return r
	}
	cases := map[string]struct {
		rec    trace.Record
		direct bool
	}{
		"create":     {base, true},
		"empty data": {with(func(r *trace.Record) { r.Data = json.RawMessage(`{}`) }), true},
		"nested": {with(func(r *trace.Record) {
			r.Data = json.RawMessage(`{"a":[],"b":{},"c":[1,{"d":[true,false,null]},[[]]],"e":{"f":{"g":-1.5e-7}}}`)
		}), true},
		"escapes": {with(func(r *trace.Record) { r.Data = json.RawMessage(`{"a\"b":"c\\\"<d>&e","\\\\":"\u0001\n"}`) }), true},
		"html": {with(func(r *trace.Record) {
			r.Data = json.RawMessage(`{"<>":"a&b<c>d","x":"` + "\u2028\u2029é日本" + `"}`)
		}), true},
		"brackets":     {with(func(r *trace.Record) { r.Data = json.RawMessage(`{"a":"{[,:]}","b":[","]}`) }), true},
		"nil flags":    {with(func(r *trace.Record) { r.Flags = nil }), true},
		"zero times":   {with(func(r *trace.Record) { r.CreatedAt, r.UpdatedAt = time.Time{}, time.Time{} }), true},
		"zone":         {with(func(r *trace.Record) { r.CreatedAt = at.In(time.FixedZone("x", 3600)) }), true},
		"flags":        {with(func(r *trace.Record) { r.Flags = []trace.Flag{{Flag: "pii", Severity: 3, Timestamp: at}} }), false},
		"html in kind": {with(func(r *trace.Record) { r.Kind = "a<b" }), false},
		"unicode":      {with(func(r *trace.Record) { r.Tenant = "é" }), false},
		"whitespace":   {with(func(r *trace.Record) { r.Data = json.RawMessage(`{"a": 1}`) }), false},
		"control":      {with(func(r *trace.Record) { r.Data = json.RawMessage("{\"a\":\"\x01\"}") }), false},
		"no data":      {with(func(r *trace.Record) { r.Data = nil }), false},
		"year 10000":   {with(func(r *trace.Record) { r.UpdatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, ok := appendRecord(nil, &tc.rec); ok != tc.direct {
				t.Errorf("written directly: %v, want %v", ok, tc.direct)
			}
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeJSON(want, 201, tc.rec)
			writeRecord(got, 201, &tc.rec)
			if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Fatalf("writeRecord: %d\n%s\nwriteJSON: %d\n%s", got.Code, got.Body, want.Code, want.Body)
			}
			for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("%s: %q, want %q", h, got.Header().Get(h), want.Header().Get(h))
				}
			}
		})
	}
}

// TestWriteJSONUnencodable: an answer holding a NaN is a 500 problem, not an empty 200.
func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, map[string]float64{"rate": math.NaN()})
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(rec.Body.String(), "could not be encoded") {
		t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	rec = httptest.NewRecorder()
	writeJSON(rec, http.StatusCreated, map[string]float64{"rate": 1.5})
	if rec.Code != http.StatusCreated || rec.Body.String() != "{\n  \"rate\": 1.5\n}\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}
