package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestFlagDetailsRoundTrip: a flag with a stage, a score and a location is stored as
// given, read back, verified, and survives export and offline verification of a bundle.
func TestFlagDetailsRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, memstore.New())
	session := NewID()
	rec, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`{"prompt":"x"}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	want := []Flag{
		{Flag: governance.FlagJailbreak, Severity: 8, Reason: "keyword", RuleID: "keyword", AutoDetected: true,
			Stage: StagePre, Score: 0.93, Location: &Location{Line: 4, Column: 7, Start: 12, End: 40}},
		{Flag: governance.FlagHighRisk, Severity: 6, RuleID: "keyword-output", AutoDetected: true,
			Stage: StagePost, Score: 1e-7, Location: &Location{Start: 0, End: 6}},
		{Flag: governance.FlagAnomaly, Severity: 2, Stage: StagePre, Location: &Location{Line: 2}},
		{Flag: governance.FlagUnsafe, Severity: 3, Reason: "by hand"},
	}
	if _, _, err := s.Apply(ctx, rec.ID, "governance", Update{Flags: want}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Flags) != len(want) {
		t.Fatalf("got %d flags, want %d", len(got.Flags), len(want))
	}
	for i, f := range got.Flags {
		w := want[i]
		w.Timestamp = f.Timestamp
		if !reflect.DeepEqual(f, w) {
			t.Errorf("flag %d = %+v, want %+v", i, f, w)
		}
	}
	if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	// The record as the API shows it carries the fields; a flag without them, none.
	b, err := json.Marshal(got.Flags)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{`"stage":"pre"`, `"score":0.93`, `"location":{"line":4,"column":7,"start":12,"end":40}`, `"location":{"start":0,"end":6}`, `"location":{"line":2,"start":0,"end":0}`} {
		if !bytes.Contains(b, []byte(sub)) {
			t.Errorf("flags JSON %s lacks %s", b, sub)
		}
	}
	if last := b[bytes.LastIndex(b, []byte(`{"flag"`)):]; bytes.Contains(last, []byte("stage")) || bytes.Contains(last, []byte("score")) || bytes.Contains(last, []byte("location")) {
		t.Errorf("a flag without details shows some: %s", last)
	}

	var buf bytes.Buffer
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	sum, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: s.PublicKey()})
	if err != nil || sum.Traces != 1 {
		t.Fatalf("VerifyBundle = %+v, %v", sum, err)
	}
	// The record and the entry that holds the flag both carry its location.
	records := unpack(t, buf.Bytes()).data["records.jsonl"]
	if n := bytes.Count(records, []byte(`"location":{"column":7,"end":40,"line":4,"start":12}`)); n != 2 {
		t.Fatalf("exported records hold the location %d times, want 2:\n%s", n, records)
	}
}

// TestFlagDetailsInvalid: a stage, score or location the store cannot keep is refused with
// ErrInvalid and a message naming it, and nothing is written.
func TestFlagDetailsInvalid(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, memstore.New())
	rec, err := s.Create(ctx, NewID(), TraceCustom, nil, "api")
	if err != nil {
		t.Fatal(err)
	}
	base := Flag{Flag: governance.FlagAnomaly, Severity: 2}
	for _, tc := range []struct {
		name string
		edit func(*Flag)
		want string
	}{
		{"unknown stage", func(f *Flag) { f.Stage = "during" }, "stage"},
		{"stage in capitals", func(f *Flag) { f.Stage = "PRE" }, "stage"},
		{"NaN score", func(f *Flag) { f.Score = math.NaN() }, "score"},
		{"infinite score", func(f *Flag) { f.Score = math.Inf(-1) }, "score"},
		{"empty location", func(f *Flag) { f.Location = &Location{} }, "neither a line nor a span"},
		{"negative line", func(f *Flag) { f.Location = &Location{Line: -1} }, "line"},
		{"column without line", func(f *Flag) { f.Location = &Location{Column: 3, Start: 0, End: 2} }, "no line"},
		{"line too large", func(f *Flag) { f.Location = &Location{Line: MaxLine + 1} }, "line"},
		{"end before start", func(f *Flag) { f.Location = &Location{Start: 9, End: 3} }, "before it starts"},
		{"negative start", func(f *Flag) { f.Location = &Location{Start: -1, End: 3} }, "offsets"},
		{"offset too large", func(f *Flag) { f.Location = &Location{Start: 1, End: MaxOffset + 1} }, "offsets"},
	} {
		f := base
		tc.edit(&f)
		_, _, err := s.Apply(ctx, rec.ID, "governance", Update{Flags: []Flag{f}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
	if got, err := s.Get(ctx, rec.ID); err != nil || len(got.Flags) != 0 || got.Length != 1 {
		t.Fatalf("after refused flags: %+v, %v", got, err)
	}
}

// goldenFlaggedHash is the hash of the "flagged" entry in TestFlagWithoutDetailsUnchanged,
// computed by the store before flags had a stage, score and location.
const goldenFlaggedHash = "24a0ed0bde8117c8c49e1dec082d27dd9ed809e7a56ef5484e6bd7e0d380e8af"

// TestFlagWithoutDetailsUnchanged: a flag without the optional fields encodes exactly as
// before they existed, so old entries, records and bundles hash and verify as they did;
// one with them is decoded strictly (the chain's check of canonical form).
func TestFlagWithoutDetailsUnchanged(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	f := Flag{Flag: governance.FlagMalicious, Severity: 9, Reason: "rm -rf /", RuleID: "code.shell", AutoDetected: true, Timestamp: at}
	// What a flag entry's data was before Stage, Score and Location: the same struct
	// without them.
	old := struct {
		Flag         string    `json:"flag"`
		Severity     int       `json:"severity"`
		Reason       string    `json:"reason"`
		RuleID       string    `json:"rule_id"`
		AutoDetected bool      `json:"auto_detected"`
		Timestamp    time.Time `json:"timestamp"`
	}{f.Flag, f.Severity, f.Reason, f.RuleID, f.AutoDetected, f.Timestamp}
	got, want := mustCanonical(t, f), mustCanonical(t, old)
	if !bytes.Equal(got, want) {
		t.Fatalf("flag without details encodes as %s, before as %s", got, want)
	}
	const golden = `{"auto_detected":true,"flag":"malicious","reason":"rm -rf /","rule_id":"code.shell","severity":9,"timestamp":"2026-01-02T03:04:05.000006Z"}`
	if string(got) != golden {
		t.Fatalf("flag without details encodes as %s, want %s", got, golden)
	}
	// An entry holding it hashes as before.
	e := Entry{TraceID: "t", SessionID: "s", Index: 1, Kind: KindFlagged, Agent: "governance", Data: got, Timestamp: at, PrevHash: "p"}
	if _, err := sealEntry(&e); err != nil || e.Hash != goldenFlaggedHash {
		t.Fatalf("entry hash %s (%v), want %s", e.Hash, err, goldenFlaggedHash)
	}
	var back Flag
	if err := decodeExact(got, &back); err != nil || !reflect.DeepEqual(back, f) {
		t.Fatalf("decode %s: %+v, %v", got, back, err)
	}

	// With details: canonical, decoded back exactly; a score of 0 or a non-canonical
	// encoding is not accepted as a flag's data.
	f.Stage, f.Score, f.Location = StagePost, 0.5, &Location{Line: 1, Start: 3, End: 9}
	got = mustCanonical(t, f)
	if err := decodeExact(got, &back); err != nil || !reflect.DeepEqual(back, f) {
		t.Fatalf("decode %s: %+v, %v", got, back, err)
	}
	for _, raw := range []string{
		strings.Replace(string(got), `"score":0.5`, `"score":0`, 1),
		strings.Replace(string(got), `"score":0.5`, `"score":5e-1`, 1),
		strings.Replace(string(got), `"line":1,`, `"line":0,`, 1),
	} {
		if err := decodeExact([]byte(raw), &back); err == nil {
			t.Errorf("decodeExact accepted %s", raw)
		}
	}
}
