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
	pieces := []string{"", "a", "ü", "日本", "😀", "<>&", "\u2028\u2029", "\"", "\\", "\n\t\r\b\f", "\x00\x01\x1f", "\x7f", "\xff\xfe", "trace/01J", "é\u0301"}
	str := func() string {
		var b bytes.Buffer
		for range r.IntN(4) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	datas := []string{"", "null", "1", `"x"`, `{"a":[1,2.5,"\u0000"],"b":{}}`, `[]`, `-0`, `1e+21`}
	for i := range 5000 {
		var data json.RawMessage
		if d := datas[r.IntN(len(datas))]; d != "" {
			c, err := Canonicalize([]byte(d))
			if err != nil {
				t.Fatal(err)
			}
			data = c
		}
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
