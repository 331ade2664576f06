package trace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// bundleFiles is an unpacked bundle: file names in archive order and their contents.
type bundleFiles struct {
	names []string
	data  map[string][]byte
}

func unpack(t *testing.T, b []byte) bundleFiles {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	f := bundleFiles{data: map[string][]byte{}}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return f
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f.names = append(f.names, h.Name)
		f.data[h.Name] = body
	}
}

func (f bundleFiles) pack(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range f.names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(f.data[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data[name])
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// with returns a copy of f whose file name holds data.
func (f bundleFiles) with(name string, data []byte) bundleFiles {
	g := bundleFiles{names: append([]string(nil), f.names...), data: map[string][]byte{}}
	for k, v := range f.data {
		g.data[k] = v
	}
	g.data[name] = data
	return g
}

// lines splits a file into its lines, each with its newline.
func lines(b []byte) [][]byte {
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

// traceIn creates a trace in session with a few entries of every kind.
func traceIn(t *testing.T, s *Store, session string, data string, notes int, flag bool) Record {
	t.Helper()
	ctx := context.Background()
	rec, err := s.Create(ctx, session, TraceCustom, json.RawMessage(data), "api")
	if err != nil {
		t.Fatal(err)
	}
	for i := range notes {
		if _, err := s.Append(ctx, rec.ID, Entry{Kind: KindExecuted, Agent: "runner.python", Data: json.RawMessage(`{"exit_code":0,"stdout":"<ok>\n","i":` + string(rune('0'+i)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if flag {
		if _, err := s.AddFlag(ctx, rec.ID, Flag{Flag: governance.FlagMalicious, Severity: 9, Reason: "rm -rf /", RuleID: "code.shell", AutoDetected: true}, "governance"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetStatus(ctx, rec.ID, StatusQuarantined, "governance", "severity 9"); err != nil {
			t.Fatal(err)
		}
	}
	rec, err = s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func testBundleRoundTrip(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	s := newStore(t, st)
	session := NewID()
	a := traceIn(t, s, session, `{"prompt":"héllo \u2028 \ud83d\ude00","n":[1e21,0.1]}`, 2, true)
	b := traceIn(t, s, session, `{}`, 1, false)
	traceIn(t, s, NewID(), `{"other":"session"}`, 1, false)

	var buf bytes.Buffer
	sum, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: session})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Traces != 2 || sum.Entries != a.Length+b.Length || sum.Checkpoints != a.Length+b.Length || sum.KeyFingerprint != testKey.Fingerprint() {
		t.Fatalf("WriteBundle summary %+v", sum)
	}
	got, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(sum.CreatedAt) {
		t.Fatalf("created_at %v, want %v", got.CreatedAt, sum.CreatedAt)
	}
	got.CreatedAt = sum.CreatedAt
	if a, b := mustCanonical(t, got), mustCanonical(t, sum); !bytes.Equal(a, b) {
		t.Fatalf("VerifyBundle summary %s, want %s", a, b)
	}
	files := unpack(t, buf.Bytes())
	if strings.Join(files.names, ",") != "public_key,records.jsonl,checkpoints.jsonl" {
		t.Fatalf("archive holds %v", files.names)
	}

	// Trace ids: sorted, without duplicates.
	buf.Reset()
	sum, err = s.WriteBundle(ctx, &buf, BundleScope{TraceIDs: []string{b.ID, a.ID, b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Traces != 2 || len(sum.Scope.TraceIDs) != 2 || sum.Scope.TraceIDs[0] != a.ID {
		t.Fatalf("trace-id bundle summary %+v", sum)
	}
	if _, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{}); err != nil {
		t.Fatal(err)
	}

	// A chain that outgrew its latest checkpoint (its last checkpoint removed, or entries
	// written without the host key) is not sealed with a new checkpoint on export: the host
	// does not sign what it cannot vouch for.
	ns := SessionNamespace(DefaultTenant, session)
	del(t, st, ns, ckptKey(b.ID, b.Length))
	if v, _ := s.Verify(ctx, b.ID); v.Valid || v.SignedLength != b.Length-1 {
		t.Fatalf("Verify with the last checkpoint missing = %+v", v)
	}
	buf.Reset()
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{TraceIDs: []string{b.ID}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("export of a chain whose last checkpoint is missing: %v, want ErrCorrupt", err)
	}
	if v, _ := s.Verify(ctx, b.ID); v.Valid || v.SignedLength != b.Length-1 {
		t.Fatalf("Verify after the refused export = %+v", v)
	}

	// An empty session gives an empty bundle that verifies.
	buf.Reset()
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: NewID()}); err != nil {
		t.Fatal(err)
	}
	if sum, err := VerifyBundle(&buf, VerifyOptions{}); err != nil || sum.Traces != 0 {
		t.Fatalf("empty bundle: %+v, %v", sum, err)
	}

	for _, tc := range []struct {
		scope BundleScope
		want  error
	}{
		{BundleScope{}, ErrInvalid},
		{BundleScope{SessionID: session, TraceIDs: []string{a.ID}}, ErrInvalid},
		{BundleScope{SessionID: "nope"}, ErrNotFound},
		{BundleScope{TraceIDs: []string{a.ID, NewID()}}, ErrNotFound},
		{BundleScope{TraceIDs: []string{"nope"}}, ErrNotFound},
	} {
		if _, err := s.WriteBundle(ctx, io.Discard, tc.scope); !errors.Is(err, tc.want) {
			t.Errorf("WriteBundle(%+v): %v, want %v", tc.scope, err, tc.want)
		}
	}
}

// tamperFixture returns an intact bundle of a session with two traces, and its store.
func tamperFixture(t *testing.T) (*Store, bundleFiles) {
	t.Helper()
	st := memstore.New()
	s := newStore(t, st)
	session := NewID()
	traceIn(t, s, session, `{"prompt":"print(1)","params":{"t":0.5}}`, 2, true)
	traceIn(t, s, session, `{"x":"y"}`, 1, false)
	var buf bytes.Buffer
	if _, err := s.WriteBundle(context.Background(), &buf, BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	return s, unpack(t, buf.Bytes())
}

// TestVerifyBundleTampering changes an intact bundle in every way the issue names (a byte of
// each line flipped, each line deleted, each pair of adjacent lines swapped) and checks that
// every change is rejected, a flipped byte with the file and line it is in.
func TestVerifyBundleTampering(t *testing.T) {
	s, files := tamperFixture(t)
	if _, err := VerifyBundle(bytes.NewReader(files.pack(t)), VerifyOptions{TrustedKey: s.PublicKey()}); err != nil {
		t.Fatalf("intact bundle rejected: %v", err)
	}
	expectReject := func(t *testing.T, f bundleFiles, file string, line int) *BundleError {
		t.Helper()
		_, err := VerifyBundle(bytes.NewReader(f.pack(t)), VerifyOptions{})
		var be *BundleError
		if !errors.As(err, &be) || !errors.Is(err, ErrBundle) {
			t.Fatalf("tampered bundle: got %v, want a *BundleError", err)
		}
		if line > 0 && (be.File != file || be.Line != line) {
			t.Fatalf("tampered %s:%d, error names %s:%d: %v", file, line, be.File, be.Line, err)
		}
		return be
	}
	cases := 0
	for _, file := range []string{BundleRecords, BundleCheckpoints} {
		ls := lines(files.data[file])
		if len(ls) < 4 {
			t.Fatalf("%s has only %d lines", file, len(ls))
		}
		for i, l := range ls {
			// Flip a byte at a dozen places of the line, its newline included.
			step := max(1, len(l)/12)
			for pos := 0; pos < len(l); pos += step {
				for _, p := range []int{pos, len(l) - 1} {
					mod := bytes.Clone(files.data[file])
					off := len(bytes.Join(ls[:i], nil)) + p
					mod[off] ^= 0x01
					be := expectReject(t, files.with(file, mod), file, i+1)
					cases++
					if i == 2 && pos == step*3 {
						t.Logf("flip %s:%d byte %d: %v", file, i+1, p, be)
					}
				}
			}
			// Delete the line.
			del := bytes.Join(append(append([][]byte{}, ls[:i]...), ls[i+1:]...), nil)
			be := expectReject(t, files.with(file, del), file, 0)
			t.Logf("delete %s:%d: %v", file, i+1, be)
			cases++
			// Swap it with the next one.
			if i+1 < len(ls) {
				sw := append([][]byte{}, ls...)
				sw[i], sw[i+1] = sw[i+1], sw[i]
				be := expectReject(t, files.with(file, bytes.Join(sw, nil)), file, 0)
				t.Logf("swap %s:%d-%d: %v", file, i+1, i+2, be)
				cases++
			}
		}
	}
	for p := range files.data[BundlePublicKey] {
		mod := bytes.Clone(files.data[BundlePublicKey])
		mod[p] ^= 0x01
		expectReject(t, files.with(BundlePublicKey, mod), "", 0)
		cases++
	}
	t.Logf("%d tampered bundles, all rejected", cases)
}

// TestVerifyBundleAttacks covers changes made with care to look valid.
func TestVerifyBundleAttacks(t *testing.T) {
	s, files := tamperFixture(t)
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	recLines := lines(files.data[BundleRecords])
	ckLines := lines(files.data[BundleCheckpoints])
	// parse the line-2 trace record and the first checkpoint
	var first bundleLine
	json.Unmarshal(recLines[1], &first)
	rec, err := parseRecord(first.Trace)
	if err != nil {
		t.Fatal(err)
	}
	var ck Checkpoint
	json.Unmarshal(ckLines[0], &ck)
	joinWithout := func(ls [][]byte, drop func(i int, l []byte) bool) []byte {
		var out []byte
		for i, l := range ls {
			if !drop(i, l) {
				out = append(out, l...)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		files func() bundleFiles
		opts  VerifyOptions
		want  string
	}{
		{"trace data altered, still canonical", func() bundleFiles {
			r := rec
			r.Data = json.RawMessage(`{"params":{"t":0.5},"prompt":"print(2)"}`)
			ls := append([][]byte{}, recLines...)
			ls[1] = append(mustCanonical(t, bundleLine{Type: "trace", Trace: mustCanonical(t, r)}), '\n')
			return files.with(BundleRecords, bytes.Join(ls, nil))
		}, VerifyOptions{}, "records.jsonl:2: trace " + rec.ID + ": trace data altered"},
		{"checkpoint re-signed by another key", func() bundleFiles {
			c := ck
			raw, _ := signCheckpoint(other, &c)
			ls := append([][]byte{}, ckLines...)
			ls[0] = append(raw, '\n')
			return files.with(BundleCheckpoints, bytes.Join(ls, nil))
		}, VerifyOptions{}, "checkpoints.jsonl:1: checkpoint is signed by key " + other.Fingerprint()},
		{"checkpoint signed by another key under the host's name", func() bundleFiles {
			c := ck
			raw, _ := signCheckpoint(other, &c)
			json.Unmarshal(raw, &c)
			c.Key = testKey.Fingerprint()
			ls := append([][]byte{}, ckLines...)
			ls[0] = append(mustCanonical(t, c), '\n')
			return files.with(BundleCheckpoints, bytes.Join(ls, nil))
		}, VerifyOptions{}, "checkpoints.jsonl:1: checkpoint signature does not verify"},
		{"whole trace removed", func() bundleFiles {
			id := rec.ID
			f := files.with(BundleRecords, joinWithout(recLines, func(i int, l []byte) bool { return i > 0 && bytes.Contains(l, []byte(id)) }))
			return f.with(BundleCheckpoints, joinWithout(ckLines, func(_ int, l []byte) bool { return bytes.Contains(l, []byte(id)) }))
		}, VerifyOptions{}, "counts 2 traces but the file holds 1"},
		{"last checkpoint removed", func() bundleFiles {
			return files.with(BundleCheckpoints, joinWithout(ckLines, func(i int, _ []byte) bool { return i == len(ckLines)-1 }))
		}, VerifyOptions{}, "the latest signed checkpoint covers"},
		{"middle checkpoint removed", func() bundleFiles {
			return files.with(BundleCheckpoints, joinWithout(ckLines, func(i int, _ []byte) bool { return i == 1 }))
		}, VerifyOptions{}, "checkpoints were removed or added"},
		{"public key replaced", func() bundleFiles {
			return files.with(BundlePublicKey, MarshalPublicKey(other.PublicKey()))
		}, VerifyOptions{}, "header names key"},
		{"untrusted key", func() bundleFiles { return files }, VerifyOptions{TrustedKey: other.PublicKey()}, "is not the trusted key"},
		{"extra file", func() bundleFiles {
			f := files.with("notes.txt", []byte("x"))
			f.names = append(f.names, "notes.txt")
			return f
		}, VerifyOptions{}, "unexpected file"},
		{"missing file", func() bundleFiles {
			f := files.with(BundleCheckpoints, nil)
			f.names = f.names[:2]
			return f
		}, VerifyOptions{}, "checkpoints.jsonl is missing"},
		{"file twice", func() bundleFiles {
			f := files.with(BundleRecords, files.data[BundleRecords])
			f.names = append(f.names, BundleRecords)
			return f
		}, VerifyOptions{}, "appears twice"},
		{"records cut short", func() bundleFiles {
			b := files.data[BundleRecords]
			return files.with(BundleRecords, b[:len(b)-10])
		}, VerifyOptions{}, "does not end with a newline"},
		{"blank line added", func() bundleFiles {
			return files.with(BundleRecords, append(bytes.Clone(files.data[BundleRecords]), '\n'))
		}, VerifyOptions{}, "empty line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyBundle(bytes.NewReader(tc.files().pack(t)), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}

	// Repacked as `tar -C dir -czf bundle.tgz .` does it: a directory entry and ./ names.
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "./", Mode: 0o755, Typeflag: tar.TypeDir})
	for _, name := range []string{BundleCheckpoints, BundlePublicKey, BundleRecords} {
		tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o644, Size: int64(len(files.data[name])), Typeflag: tar.TypeReg})
		tw.Write(files.data[name])
	}
	tw.Close()
	gz.Close()
	if _, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: s.PublicKey()}); err != nil {
		t.Fatalf("bundle repacked by tar: %v", err)
	}
	// Data hidden after the end of the archive.
	buf.Reset()
	gz = gzip.NewWriter(&buf)
	gz.Write(unzip(t, files.pack(t)))
	gz.Write([]byte("hidden"))
	gz.Close()
	if _, err := VerifyBundle(&buf, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "after the end of the tar archive") {
		t.Fatalf("data after the archive: %v", err)
	}

	// A bundle repacked in another file order still verifies (files are spooled).
	f := files.with(BundlePublicKey, files.data[BundlePublicKey])
	f.names = []string{BundleCheckpoints, BundleRecords, BundlePublicKey}
	if _, err := VerifyBundle(bytes.NewReader(f.pack(t)), VerifyOptions{TrustedKey: s.PublicKey()}); err != nil {
		t.Fatalf("reordered archive: %v", err)
	}
	if _, err := VerifyBundle(strings.NewReader("not gzip"), VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "not a gzip file") {
		t.Fatalf("not gzip: %v", err)
	}
}

func unzip(t *testing.T, b []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChangedEntryWithRecomputedHashesIsLocated: an entry's data changed, with every later
// hash and prev_hash and the record's provenance_head recomputed, leaves records.jsonl
// unlike the digest in its signed header; the verifier names the entry's line and trace,
// found by the first signed checkpoint whose head the chain no longer has.
func TestChangedEntryWithRecomputedHashesIsLocated(t *testing.T) {
	s, files := tamperFixture(t)
	ls := lines(files.data[BundleRecords])
	var recLine bundleLine
	if err := json.Unmarshal(ls[1], &recLine); err != nil {
		t.Fatal(err)
	}
	rec, err := parseRecord(recLine.Trace)
	if err != nil {
		t.Fatal(err)
	}
	// Lines 3 to 3+Length-1 hold the first trace's entries; change entry 1 (line 4).
	prev := ""
	for i := int64(0); i < rec.Length; i++ {
		var l bundleLine
		if err := json.Unmarshal(ls[2+i], &l); err != nil {
			t.Fatal(err)
		}
		e, _, err := parseEntry(l.Entry)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			e.Data = json.RawMessage(`{"exit_code":0,"stdout":"all tests passed\n"}`)
		}
		if i >= 1 {
			e.PrevHash = prev
			raw, err := sealEntry(&e)
			if err != nil {
				t.Fatal(err)
			}
			ls[2+i] = append(mustCanonical(t, bundleLine{Type: "entry", Entry: raw}), '\n')
		}
		prev = e.Hash
	}
	rec.Head = prev
	ls[1] = append(mustCanonical(t, bundleLine{Type: "trace", Trace: mustCanonical(t, rec)}), '\n')
	_, err = VerifyBundle(bytes.NewReader(files.with(BundleRecords, bytes.Join(ls, nil)).pack(t)), VerifyOptions{TrustedKey: s.PublicKey()})
	var be *BundleError
	if !errors.As(err, &be) || be.File != BundleRecords || be.Line != 4 || be.TraceID != rec.ID || be.Index != 1 {
		t.Fatalf("VerifyBundle = %v; want records.jsonl line 4, trace %s entry 1", err, rec.ID)
	}
	want := fmt.Sprintf("records.jsonl:4: trace %s entry 1: this entry was changed", rec.ID)
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q, want it to start %q", err, want)
	}
}

// TestBundleFileTimesNotInFuture: the archive's files carry the bundle's time truncated to
// the second (tar keeps whole seconds), never rounded up past it.
func TestBundleFileTimesNotInFuture(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 0, 7, 645_000_000, time.UTC)
	s, err := New(memstore.New(), testKey, Options{TempDir: t.TempDir(), Now: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	session := NewID()
	traceIn(t, s, session, `{}`, 1, false)
	var buf bytes.Buffer
	if _, err := s.WriteBundle(context.Background(), &buf, BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := created.Truncate(time.Second); !h.ModTime.Equal(want) {
			t.Errorf("%s: time %v, want %v", h.Name, h.ModTime.UTC(), want)
		}
	}
}
