package trace

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// TestEntryJSON checks the direct encoder of entries against the general canonical
// encoder on entries with every kind of string and value, including the cases it hands
// to the general path.
func TestEntryJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := randomStrings(r)
	datas := []string{"", "null", "1", `"x"`, `{"a":[1,2.5,"\u0000"],"b":{}}`, `[]`, `-0`, `1e+21`}
	for i := range 5000 {
		data := pickData(t, r, datas)
		e := Entry{
			TraceID: str(), SessionID: str(), Index: r.Int64N(1 << 54), Kind: str(), Agent: str(), Data: data,
			Timestamp: time.Unix(r.Int64N(1<<36)-(1<<35), r.Int64N(1e9)).In(time.FixedZone("", (r.IntN(48)-24)*1800)),
			PrevHash:  str(), Hash: str(),
		}
		if i%7 == 0 {
			e.Index = int64(i)
		}
		want, werr := canonicalJSON(&e)
		got, gerr := entryJSON(&e)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("entry %+v:\n got %s (%v)\nwant %s (%v)", e, got, gerr, want, werr)
		}
	}
}

// TestRecordAndCheckpointJSON checks the direct encoders of records and checkpoints
// against the general canonical encoder, as TestEntryJSON does for entries.
func TestRecordAndCheckpointJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	str := randomStrings(r)
	when := func() time.Time {
		if r.IntN(20) == 0 {
			return time.Date(10000+r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC) // beyond encoding/json
		}
		return time.Unix(r.Int64N(1<<36)-(1<<35), r.Int64N(1e9)).In(time.FixedZone("", (r.IntN(48)-24)*1800))
	}
	length := func(i int) int64 {
		switch i % 9 {
		case 0:
			return int64(i)
		case 1:
			return -1
		}
		return r.Int64N(1 << 55)
	}
	datas := []string{"", `{}`, `{"a":[1,2.5,"\u0000"],"b":{}}`, `{"x":"ü\n"}`}
	for i := range 5000 {
		data := pickData(t, r, datas)
		rec := Record{
			ID: str(), SessionID: str(), Tenant: str(), Kind: str(), Status: Status(str()), Data: data,
			CreatedAt: when(), UpdatedAt: when(), Length: length(i), Head: str(),
		}
		switch i % 3 {
		case 1:
			rec.Flags = []Flag{}
		case 2:
			rec.Flags = []Flag{{Flag: str(), Severity: r.IntN(11), Reason: str(), RuleID: str(), AutoDetected: r.IntN(2) == 0, Timestamp: when()}}
			if r.IntN(2) == 0 { // with the optional details, or some of them
				rec.Flags[0].Stage, rec.Flags[0].Score = str(), r.Float64()*float64(r.IntN(2))
				if r.IntN(2) == 0 {
					rec.Flags[0].Location = &Location{Line: r.IntN(100), Column: r.IntN(100), Start: r.IntN(1 << 20), End: r.IntN(1 << 20)}
				}
			}
		}
		want, werr := canonicalJSON(&rec)
		got, gerr := recordJSON(&rec)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("record %+v:\n got %s (%v)\nwant %s (%v)", rec, got, gerr, want, werr)
		}
		c := Checkpoint{SessionID: str(), TraceID: str(), Length: length(i), Head: str(), Timestamp: when(), Key: str()}
		if i%2 == 0 {
			c.Signature = str()
		}
		want, werr = canonicalJSON(&c)
		got, gerr = checkpointJSON(&c)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("checkpoint %+v:\n got %s (%v)\nwant %s (%v)", c, got, gerr, want, werr)
		}
	}
}

// randomStrings returns a source of short strings made of pieces that exercise canonical
// JSON: escapes, control characters, non-BMP and invalid UTF-8, and none at all.
func randomStrings(r *rand.Rand) func() string {
	pieces := []string{"", "a", "ü", "日本", "😀", "<>&", "\u2028\u2029", "\"", "\\", "\n\t\r\b\f", "\x00\x01\x1f", "\x7f", "\xff\xfe", "trace/01J", "é\u0301"}
	return func() string {
		var b bytes.Buffer
		for range r.IntN(4) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
}

// pickData returns one of datas at random, canonicalized; "" stands for no data.
func pickData(t *testing.T, r *rand.Rand, datas []string) json.RawMessage {
	t.Helper()
	d := datas[r.IntN(len(datas))]
	if d == "" {
		return nil
	}
	c, err := Canonicalize([]byte(d))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCreatedInfoJSON: the direct encoder of a "created" entry's data writes what
// canonicalJSON does, and decodeExact accepts exactly that.
func TestCreatedInfoJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	str := randomStrings(r)
	for range 5000 {
		info := createdInfo{Kind: str(), Tenant: str(), DataSHA256: str()}
		want, werr := canonicalJSON(&info)
		got, gerr := createdInfoJSON(&info)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("created info %+v:\n got %s (%v)\nwant %s (%v)", info, got, gerr, want, werr)
		}
		var back createdInfo
		if err := decodeExact(got, &back); err != nil || (validUTF8(info.Kind, info.Tenant, info.DataSHA256) && back != info) {
			t.Fatalf("decodeExact(%s): %+v, %v", got, back, err)
		}
	}
	var back createdInfo
	if err := decodeExact([]byte(`{"kind":"a","data_sha256":"b","tenant":"c"}`), &back); err == nil {
		t.Fatal("decodeExact accepted members out of canonical order")
	}
}

// TestPlainCreatedInfo: data that parsePlainCreatedInfo reads is data encoding/json's path
// of decodeExact accepts, with the same result, and that of the host's own entries is read.
func TestPlainCreatedInfo(t *testing.T) {
	generic := func(raw []byte) (createdInfo, bool) {
		var i createdInfo
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&i); err != nil {
			return createdInfo{}, false
		}
		again, err := canonicalJSON(&i)
		return i, err == nil && bytes.Equal(again, raw)
	}
	r := rand.New(rand.NewPCG(7, 8))
	str := randomStrings(r)
	own, _ := createdInfoJSON(&createdInfo{Kind: "custom", Tenant: "default", DataSHA256: dataHash([]byte("{}"))})
	var i createdInfo
	if !parsePlainCreatedInfo(own, &i) {
		t.Fatalf("%s was not read directly", own)
	}
	raws := [][]byte{own, []byte(`{"data_sha256":"","kind":"","tenant":""}`), []byte(`{"data_sha256":"a","kind":"b","tenant":"c"} `),
		[]byte(`{"data_sha256":"a","kind":"b","tenant":"c","x":1}`), []byte(`{"data_sha256":"a","kind":"b"}`), []byte(`{"data_sha256":"a\"","kind":"b","tenant":"c"}`)}
	for range 3000 {
		raw, _ := createdInfoJSON(&createdInfo{Kind: str(), Tenant: str(), DataSHA256: str()})
		raws = append(raws, raw)
		if len(raw) > 0 { // and with one byte changed
			m := bytes.Clone(raw)
			m[r.IntN(len(m))] = `"{}:,\a<é`[r.IntN(9)]
			raws = append(raws, m)
		}
	}
	for _, raw := range raws {
		var got createdInfo
		if !parsePlainCreatedInfo(raw, &got) {
			if got != (createdInfo{}) {
				t.Fatalf("%q: not read, but the result was changed to %+v", raw, got)
			}
			continue
		}
		if want, ok := generic(raw); !ok || want != got {
			t.Fatalf("%q: read as %+v; encoding/json: %+v, accepted %v", raw, got, want, ok)
		}
	}
}
