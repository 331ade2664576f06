package trace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestUnsignedEntriesDoNotVerify: someone with write access to storage but not the host key
// forges entries at the end of a chain, which no signed checkpoint covers. Verify must not
// call such a chain valid, the export must not seal it with a new checkpoint, and the next
// update must not sign over it.
func TestUnsignedEntriesDoNotVerify(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(t *testing.T, st *memstore.Store, ns string, rec Record)
	}{
		{"entry added, record updated", func(t *testing.T, st *memstore.Store, ns string, rec Record) {
			forged := Entry{TraceID: rec.ID, SessionID: rec.SessionID, Index: 4, Kind: KindExecuted, Agent: "limitd",
				Data: json.RawMessage(`{"exit_code":0,"stdout":"all tests passed\n"}`), Timestamp: rec.UpdatedAt, PrevHash: rec.Head}
			raw, err := sealEntry(&forged)
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, ns, entryKey(rec.ID, 4), raw)
			r := rec
			r.Length, r.Head = 5, forged.Hash
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}},
		{"entry added, record left behind", func(t *testing.T, st *memstore.Store, ns string, rec Record) {
			forged := Entry{TraceID: rec.ID, SessionID: rec.SessionID, Index: 4, Kind: KindExecuted, Agent: "limitd",
				Data: json.RawMessage(`{"exit_code":0}`), Timestamp: rec.UpdatedAt, PrevHash: rec.Head}
			raw, err := sealEntry(&forged)
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, ns, entryKey(rec.ID, 4), raw)
		}},
		{"last entry rewritten, its checkpoint removed", func(t *testing.T, st *memstore.Store, ns string, rec Record) {
			last := mustEntry(t, st, ns, rec.ID, 3)
			last.Data = json.RawMessage(`{"v":"rewritten"}`)
			raw, err := sealEntry(&last)
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, ns, entryKey(rec.ID, 3), raw)
			del(t, st, ns, ckptKey(rec.ID, 4))
			r := rec
			r.Head = last.Hash
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New()
			s := newStore(t, st)
			rec := fourEntryTrace(t, s)
			ns := SessionNamespace(DefaultTenant, rec.SessionID)
			tc.tamper(t, st, ns, rec)
			v, err := s.Verify(ctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.Valid || !strings.Contains(v.Error, "not covered by a checkpoint") {
				t.Fatalf("Verify = %+v, want invalid: entries no signed checkpoint covers", v)
			}
			t.Log(v.Error)
			if _, err := s.WriteBundle(ctx, new(bytes.Buffer), BundleScope{TraceIDs: []string{rec.ID}}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("WriteBundle of a chain with unsigned entries: %v, want ErrCorrupt", err)
			}
			if _, err := s.Append(ctx, rec.ID, Entry{Kind: "note"}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Append after unsigned entries: %v, want ErrCorrupt", err)
			}
			if _, err := s.SetStatus(ctx, rec.ID, StatusQuarantined, "g", "r"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("SetStatus after unsigned entries: %v, want ErrCorrupt", err)
			}
			if v, err := s.Verify(ctx, rec.ID); err != nil || v.Valid {
				t.Fatalf("Verify after the refused updates = %+v, %v: the forged entries were signed", v, err)
			}
		})
	}
}

// resign makes f a bundle signed by key as a whole (header and checkpoints), as an attacker
// with a key of their own does: then only the bundle's own checks stand in the way.
func resign(t *testing.T, f bundleFiles, key *Key) bundleFiles {
	t.Helper()
	ls := lines(f.data[BundleRecords])
	var first bundleLine
	if err := json.Unmarshal(ls[0], &first); err != nil {
		t.Fatal(err)
	}
	h := *first.Bundle
	var ckpts []byte
	for _, l := range lines(f.data[BundleCheckpoints]) {
		var c Checkpoint
		if err := json.Unmarshal(l, &c); err != nil {
			t.Fatal(err)
		}
		raw, err := signCheckpoint(key, &c)
		if err != nil {
			t.Fatal(err)
		}
		ckpts = append(append(ckpts, raw...), '\n')
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	h.RecordsSHA256 = sum(bytes.Join(ls[1:], nil))
	h.CheckpointsSHA256 = sum(ckpts)
	h.Key, h.Signature = key.Fingerprint(), ""
	h.Signature = key.sign(mustCanonical(t, h))
	ls[0] = append(mustCanonical(t, bundleLine{Type: "bundle", Bundle: &h}), '\n')
	return f.with(BundleRecords, bytes.Join(ls, nil)).with(BundleCheckpoints, ckpts).with(BundlePublicKey, MarshalPublicKey(key.PublicKey()))
}

// TestResignedBundleJSONTricks: an attacker who re-signs a whole bundle with a key of their
// own (accepted without --key, trusted on first use) rewrites an entry in JSON that means
// the same to a lenient reader (or to encoding/json) but is not the canonical form, fixing
// its hash and the chain after it. Every such entry must be refused: what verifies is
// byte for byte the canonical form of what the verifier read.
func TestResignedBundleJSONTricks(t *testing.T) {
	_, files := tamperFixture(t)
	attacker, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyBundle(bytes.NewReader(resign(t, files, attacker).pack(t)), VerifyOptions{}); err != nil {
		t.Fatalf("re-signed intact bundle: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(resign(t, files, attacker).pack(t)), VerifyOptions{TrustedKey: testKey.PublicKey()}); err == nil {
		t.Fatal("a bundle re-signed by another key verified against the host key")
	}
	ls := lines(files.data[BundleRecords])
	// Line 3 is entry 0 of the first trace, line 4 its entry 1 (an "executed" entry).
	var l bundleLine
	if err := json.Unmarshal(ls[3], &l); err != nil {
		t.Fatal(err)
	}
	orig, _ := removeMember(l.Entry, "hash")
	var e Entry
	if err := json.Unmarshal(l.Entry, &e); err != nil || e.Index != 1 {
		t.Fatalf("line 4 is not entry 1: %s", ls[3])
	}
	tricks := []struct{ name, from, to string }{
		{"duplicate member", `"agent":"runner.python",`, `"agent":"limitd","agent":"runner.python",`},
		{"member name in another case", `"agent":`, `"Agent":`},
		{"non-canonical escape", `"agent":"runner.python"`, `"agent":"runner\u002epython"`},
		{"escaped solidus", `"agent":"runner.python"`, `"agent":"runner\/python"`},
		{"invalid UTF-8", `"agent":"runner.python"`, "\"agent\":\"runner\xff.python\""},
		{"lone surrogate", `"agent":"runner.python"`, `"agent":"runner\ud800"`},
		{"number beyond a double", `"exit_code":0`, `"exit_code":1e400`},
		{"negative zero", `"exit_code":0`, `"exit_code":-0`},
		{"integer beyond 2^53", `"exit_code":0`, `"exit_code":9007199254740993`},
		{"exponent spelling", `"exit_code":0`, `"exit_code":0e0`},
		{"index spelled as float", `"index":1`, `"index":1.0`},
		{"whitespace", `"kind":"executed"`, `"kind": "executed"`},
		{"members out of order", `"agent":"runner.python","data"`, `"data"`},
	}
	for _, tc := range tricks {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(orig, []byte(tc.from)) {
				t.Fatalf("entry lacks %s: %s", tc.from, orig)
			}
			body := bytes.Replace(orig, []byte(tc.from), []byte(tc.to), 1)
			if tc.name == "members out of order" { // agent moved to the end
				body = append(body[:len(body)-1:len(body)-1], `,"agent":"runner.python"}`...)
			}
			// The hash is right for the bytes, and the chain after it is relinked.
			h := chainHash(e.PrevHash, body)
			raw := append(append([]byte(nil), body[:len(body)-1]...), fmt.Sprintf(`,"hash":"%s"}`, h)...)
			mod := append([][]byte{}, ls...)
			mod[3] = append(append(append([]byte(`{"entry":`), raw...), `,"type":"entry"}`...), '\n')
			f := resign(t, files.with(BundleRecords, bytes.Join(mod, nil)), attacker)
			_, err := VerifyBundle(bytes.NewReader(f.pack(t)), VerifyOptions{})
			if err == nil {
				t.Fatal("bundle verified")
			}
			if !strings.Contains(err.Error(), "records.jsonl:4:") {
				t.Fatalf("error does not name records.jsonl:4: %v", err)
			}
			t.Log(err)
		})
	}
}

// sparseMember writes a PAX (GNU 0.1) sparse tar member named name that
// declares size bytes, all of them a hole: a few hundred bytes in the archive.
func sparseMember(t *testing.T, tw *tar.Writer, buf *bytes.Buffer, name string, size int64) {
	t.Helper()
	tw.Flush()
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		for l := len(fmt.Sprint(n + len(fmt.Sprint(n)))); ; l++ {
			if s := fmt.Sprintf("%d %s=%s\n", n+l, k, v); len(s) == n+l {
				return s
			}
		}
	}
	pax := rec("GNU.sparse.major", "0") + rec("GNU.sparse.minor", "1") + rec("GNU.sparse.numblocks", "0") +
		rec("GNU.sparse.size", fmt.Sprint(size)) + rec("GNU.sparse.name", name)
	block := func(name string, typ byte, size int) []byte {
		b := make([]byte, 512)
		copy(b, name)
		copy(b[100:], "0000644\x00")
		copy(b[108:], "0000000\x00")
		copy(b[116:], "0000000\x00")
		copy(b[124:], fmt.Sprintf("%011o\x00", size))
		copy(b[136:], "00000000000\x00")
		b[156] = typ
		copy(b[257:], "ustar\x0000")
		copy(b[148:], "        ")
		sum := 0
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
		return b
	}
	buf.Write(block("PaxHeaders/"+name, tar.TypeXHeader, len(pax)))
	buf.WriteString(pax)
	buf.Write(make([]byte, (512-len(pax)%512)%512))
	buf.Write(block("GNUSparseFile.0/"+name, tar.TypeReg, 0))
}

// TestVerifyBundleHugeMemberFirst: a member that arrives before what it depends on is set
// aside on disk. A bundle of a few kilobytes can declare a member of a terabyte (a sparse
// file, or a gzip bomb): the verifier must refuse it instead of filling the disk.
func TestVerifyBundleHugeMemberFirst(t *testing.T) {
	_, files := tamperFixture(t)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	sparseMember(t, tw, &tarBuf, BundleCheckpoints, 1<<30+1)
	tw = tar.NewWriter(&tarBuf)
	for _, name := range []string{BundlePublicKey, BundleRecords} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files.data[name])), Typeflag: tar.TypeReg})
		tw.Write(files.data[name])
	}
	tw.Close()
	var gzBuf bytes.Buffer
	gz := gzip.NewWriter(&gzBuf)
	gz.Write(tarBuf.Bytes())
	gz.Close()
	t.Logf("bundle of %d bytes declares a checkpoints.jsonl of %d", gzBuf.Len(), 1<<30+1)
	dir := t.TempDir()
	_, err := VerifyBundle(&gzBuf, VerifyOptions{TempDir: dir})
	if err == nil || !strings.Contains(err.Error(), "checkpoints.jsonl comes before") {
		t.Fatalf("got %v, want the member refused before it is spooled", err)
	}
	t.Log(err)
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}

// TestVerifyBundleLongLine: a line longer than anything the host stores is refused before it
// is parsed (canonicalizing a line costs many times its size in memory, and a line of
// "0,0,0,…" compresses a thousandfold).
func TestVerifyBundleLongLine(t *testing.T) {
	_, files := tamperFixture(t)
	attacker, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(files.data[BundleRecords])
	big := bytes.Repeat([]byte("0,"), (maxBundleLine+2)/2)
	ls[1] = append(append([]byte(`{"trace":{"data":{"a":[`), big...), `0]}},"type":"trace"}`+"\n"...)
	f := resign(t, files.with(BundleRecords, bytes.Join(ls, nil)), attacker)
	_, err = VerifyBundle(bytes.NewReader(f.pack(t)), VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), "records.jsonl:2: line longer than") {
		t.Fatalf("got %v, want the long line refused", err)
	}
}

// TestVerifyBundleArchiveTricks: members that are not regular files, names that escape or
// repeat, and gzip streams cut short, concatenated or followed by garbage are all refused
// (the existing tests cover extra, missing and repeated members and a directory "./").
func TestVerifyBundleArchiveTricks(t *testing.T) {
	_, files := tamperFixture(t)
	type member struct {
		hdr  tar.Header
		body []byte
	}
	reg := func(name string) member {
		return member{tar.Header{Name: name, Mode: 0o644, Size: int64(len(files.data[bundleFile(name)])), Typeflag: tar.TypeReg}, files.data[bundleFile(name)]}
	}
	archive := func(ms ...member) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, m := range ms {
			if err := tw.WriteHeader(&m.hdr); err != nil {
				t.Fatal(err)
			}
			tw.Write(m.body)
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	intact := archive(reg(BundlePublicKey), reg(BundleRecords), reg(BundleCheckpoints))
	gzipped := func(b []byte) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		gz.Write(b)
		gz.Close()
		return buf.Bytes()
	}
	link := func(name string, typ byte) member {
		return member{hdr: tar.Header{Name: name, Linkname: "/etc/passwd", Mode: 0o777, Typeflag: typ}}
	}
	tests := []struct {
		name   string
		bundle []byte
		want   string
	}{
		{"symlink member", archive(reg(BundlePublicKey), link(BundleRecords, tar.TypeSymlink), reg(BundleCheckpoints)), "not a regular file"},
		{"hard link member", archive(reg(BundlePublicKey), reg(BundleRecords), link(BundleCheckpoints, tar.TypeLink)), "not a regular file"},
		{"directory under a bundle name", archive(reg(BundlePublicKey), member{hdr: tar.Header{Name: BundleRecords + "/", Mode: 0o755, Typeflag: tar.TypeDir}}), "not a regular file"},
		{"path traversal", archive(reg(BundlePublicKey), reg("../"+BundleRecords), reg(BundleCheckpoints)), "unexpected file"},
		{"absolute path", archive(reg(BundlePublicKey), reg("/"+BundleRecords), reg(BundleCheckpoints)), "unexpected file"},
		{"same file under two spellings", archive(reg(BundlePublicKey), reg(BundleRecords), reg("./"+BundleRecords), reg(BundleCheckpoints)), "appears twice"},
		{"FIFO", archive(reg(BundlePublicKey), member{hdr: tar.Header{Name: BundleRecords, Mode: 0o644, Typeflag: tar.TypeFifo}}), "not a regular file"},
		{"truncated gzip", intact[:len(intact)-5], "the archive is cut short"},
		{"truncated in a member", intact[:len(intact)/2], "the archive is cut short"},
		{"trailing garbage after the gzip stream", append(bytes.Clone(intact), "garbage"...), "gzip stream"},
		{"trailing zeros after the gzip stream", append(bytes.Clone(intact), make([]byte, 1024)...), "gzip stream"},
		{"second gzip stream with a tar member", append(bytes.Clone(intact), archive(member{tar.Header{Name: "x", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}, []byte("x")})...), "after the end of the tar archive"},
		{"second gzip stream of text", append(bytes.Clone(intact), gzipped([]byte("hidden"))...), "after the end of the tar archive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyBundle(bytes.NewReader(tc.bundle), VerifyOptions{TempDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	// A second gzip stream holding only zeros (tar padding) hides nothing: accepted.
	if _, err := VerifyBundle(bytes.NewReader(append(bytes.Clone(intact), gzipped(make([]byte, 10240))...)), VerifyOptions{TrustedKey: testKey.PublicKey()}); err != nil {
		t.Fatalf("bundle followed by a gzip stream of zeros: %v", err)
	}
}

// TestVerifyBundleCutShort: a bundle cut anywhere (in the gzip header, inside a member,
// between members, in the gzip trailer) is refused as an archive cut short, never as a
// bare "unexpected EOF" on a line of records.jsonl; cut inside records.jsonl, the error
// names that file and the last whole line before the cut.
func TestVerifyBundleCutShort(t *testing.T) {
	_, files := tamperFixture(t)
	// Stored (not deflated), so a cut at an offset of the archive is a cut at a known
	// place in its members.
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	tw := tar.NewWriter(gz)
	var recordsAt int // offset of records.jsonl's data in the archive
	for _, name := range files.names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files.data[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Flush()
		gz.Flush()
		if name == BundleRecords {
			recordsAt = buf.Len()
		}
		tw.Write(files.data[name])
	}
	tw.Close()
	gz.Close()
	stored := buf.Bytes()
	if _, err := VerifyBundle(bytes.NewReader(stored), VerifyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatalf("intact: %v", err)
	}
	deflated := files.pack(t)
	for _, bundle := range [][]byte{stored, deflated} {
		step := max(1, len(bundle)/300)
		for n := 1; n < len(bundle); n += step {
			_, err := VerifyBundle(bytes.NewReader(bundle[:n]), VerifyOptions{TempDir: t.TempDir()})
			if !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "the archive is cut short") || strings.Contains(err.Error(), "unexpected EOF") {
				t.Fatalf("cut after %d of %d bytes: %v, want the archive cut short", n, len(bundle), err)
			}
		}
	}
	// Cut in the middle of records.jsonl's third line: two whole lines before it. (A
	// stored deflate block has a 5-byte header before its data, past the 64 KiB of a
	// small file's single block.)
	recs := lines(files.data[BundleRecords])
	cut := recordsAt + 5 + len(recs[0]) + len(recs[1]) + len(recs[2])/2
	_, err := VerifyBundle(bytes.NewReader(stored[:cut]), VerifyOptions{TempDir: t.TempDir()})
	if want := "records.jsonl: the archive is cut short: it ends in this file, after line 2;"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("cut in records.jsonl line 3: %v, want %q", err, want)
	}
}

// bundleFile returns the bundle file a member name stands for.
func bundleFile(name string) string {
	for _, f := range []string{BundlePublicKey, BundleRecords, BundleCheckpoints} {
		if strings.HasSuffix(name, f) {
			return f
		}
	}
	return name
}

// TestChangedChainIsNotExtended: someone with write access to storage but not the host key
// changes what a signed chain says without touching its hashes or checkpoints (an entry's
// content with its "hash" member kept, or the trace's data), then the host restarts (a store
// with nothing cached). Verify calls the chain invalid; an append, a flag or a status change
// must not sign a checkpoint over it, and must write nothing.
func TestChangedChainIsNotExtended(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(t *testing.T, st *memstore.Store, ns string, rec Record)
	}{
		{"entry content changed, hash kept", func(t *testing.T, st *memstore.Store, ns string, rec Record) {
			raw := rawGet(t, st, ns, entryKey(rec.ID, 1))
			changed := bytes.Replace(raw, []byte(`{"v":1}`), []byte(`{"v":7}`), 1)
			if bytes.Equal(changed, raw) {
				t.Fatalf("entry 1 %s does not hold the data to change", raw)
			}
			put(t, st, ns, entryKey(rec.ID, 1), changed)
		}},
		{"trace data changed", func(t *testing.T, st *memstore.Store, ns string, rec Record) {
			r := rec
			r.Data = json.RawMessage(`{"n":2}`)
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New()
			rec := fourEntryTrace(t, newStore(t, st))
			ns := SessionNamespace(DefaultTenant, rec.SessionID)
			tc.tamper(t, st, ns, rec)
			s := newStore(t, st) // a restart: nothing cached
			if v, err := s.Verify(ctx, rec.ID); err != nil || v.Valid {
				t.Fatalf("Verify = %+v, %v, want invalid", v, err)
			}
			if _, err := s.Append(ctx, rec.ID, Entry{Kind: "note"}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Append to a changed chain: %v, want ErrCorrupt", err)
			}
			if _, err := s.AddFlag(ctx, rec.ID, Flag{Flag: "malicious", Severity: 9, Reason: "r"}, "g"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("AddFlag to a changed chain: %v, want ErrCorrupt", err)
			}
			if _, err := s.SetStatus(ctx, rec.ID, StatusQuarantined, "g", "r"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("SetStatus of a changed chain: %v, want ErrCorrupt", err)
			}
			if _, present, err := st.Get(ctx, ns, entryKey(rec.ID, rec.Length)); err != nil || present {
				t.Fatalf("entry %d after the refused updates: present %v, %v; want nothing written", rec.Length, present, err)
			}
			if _, present, err := st.Get(ctx, ns, ckptKey(rec.ID, rec.Length+1)); err != nil || present {
				t.Fatalf("checkpoint %d after the refused updates: present %v, %v; want nothing signed", rec.Length+1, present, err)
			}
		})
	}
}
