package trace

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// trustingStore returns a store over st that signs with key and trusts the keys given.
func trustingStore(t *testing.T, st storage.Storage, key *Key, trusted ...*Key) *Store {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, k := range trusted {
		pubs = append(pubs, k.PublicKey())
	}
	s, err := New(st, key, Options{TempDir: t.TempDir(), TrustedKeys: pubs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func genKey(t *testing.T) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTrustedKeys: hosts that trust each other's keys (Options.TrustedKeys) serve each
// other's traces, each signing with its own key: a chain another trusted key signed
// verifies, naming that key and the node storage records for it, and is extended, flagged
// and merged; its chain then holds checkpoints of both keys and verifies on either host.
// A host that does not trust the key keeps refusing it as a foreign key, even when storage
// records a node signing with it.
func TestTrustedKeys(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	keyA, keyB, keyC := genKey(t), genKey(t), genKey(t)
	a := trustingStore(t, st, keyA, keyB)
	b := trustingStore(t, st, keyB, keyA)
	c := trustingStore(t, st, keyC) // trusts no one
	for node, s := range map[string]*Store{"node-a": a, "node-b": b, "node-c": c} {
		if err := s.ClaimKey(ctx, node, true); err != nil {
			t.Fatal(err)
		}
	}
	session := NewID()
	rec := traceIn(t, b, session, `{"on":"b"}`, 1, false)

	v, err := a.Verify(ctx, rec.ID)
	if err != nil || !v.Valid || v.SignedBy != keyB.Fingerprint() || v.SignerNode != "node-b" || v.ForeignKey != "" || v.SignedLength != rec.Length {
		t.Fatalf("A verifies B's trace: %+v %v", v, err)
	}
	if _, err := a.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "a"}); err != nil {
		t.Fatalf("A appends to B's trace: %v", err)
	}
	if _, err := a.AddFlag(ctx, rec.ID, Flag{Flag: "anomaly", Severity: 2, Reason: "r"}, "api"); err != nil {
		t.Fatalf("A flags B's trace: %v", err)
	}
	if _, err := b.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "b"}); err != nil {
		t.Fatalf("B appends after A: %v", err)
	}
	ckpts := checkpointKeys(t, st, SessionNamespace(DefaultTenant, session), rec.ID)
	if !slices.Contains(ckpts, keyA.Fingerprint()) || !slices.Contains(ckpts, keyB.Fingerprint()) {
		t.Fatalf("checkpoint keys %v: want both A's and B's", ckpts)
	}
	for name, s := range map[string]*Store{"A": a, "B": b} {
		v, err := s.Verify(ctx, rec.ID)
		if err != nil || !v.Valid || v.SignedBy != keyB.Fingerprint() {
			t.Errorf("%s verifies the chain both signed: %+v %v", name, v, err)
		}
	}
	// What B signed last is named as B's; what A signed last, from B, as A's.
	if _, err := a.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Verify(ctx, rec.ID); err != nil || !v.Valid || v.SignedBy != keyA.Fingerprint() || v.SignerNode != "node-a" {
		t.Errorf("B verifies a chain A signed last: %+v %v", v, err)
	}
	if v, err := a.Verify(ctx, rec.ID); err != nil || !v.Valid || v.SignedBy != keyA.Fingerprint() || v.SignerNode != "" {
		t.Errorf("A verifies a chain it signed last: %+v %v (its own key names no node)", v, err)
	}

	// A host that does not trust the keys: as before, though storage names their nodes.
	v, err = c.Verify(ctx, rec.ID)
	if err != nil || v.Valid || v.ForeignKey == "" || v.ForeignNode == "" || !strings.Contains(v.Error, "nor by a key it trusts") {
		t.Errorf("C verifies: %+v %v", v, err)
	}
	_, appendErr := c.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "c"})
	_, exportErr := c.WriteBundle(ctx, io.Discard, BundleScope{TraceIDs: []string{rec.ID}})
	for name, err := range map[string]error{"append": appendErr, "export": exportErr} {
		if !errors.Is(err, ErrForeignKey) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("C's %s: %v, want ErrForeignKey", name, err)
		}
	}
	// Trust goes one way: A trusts B, but not C; a trace C signed stays foreign to A.
	recC := traceIn(t, c, session, `{"on":"c"}`, 0, false)
	if v, err := a.Verify(ctx, recC.ID); err != nil || v.Valid || v.ForeignKey != keyC.Fingerprint() || v.ForeignNode != "node-c" {
		t.Errorf("A verifies C's trace: %+v %v", v, err)
	}
	if _, err := a.Append(ctx, recC.ID, Entry{Kind: "note", Agent: "a"}); !errors.Is(err, ErrForeignKey) {
		t.Errorf("A appends to C's trace: %v", err)
	}

	// A merges B's trace: the copy in the shared record verifies as the trace does.
	if _, err := a.SetStatus(ctx, rec.ID, StatusMerged, "a", "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CopyToMerged(ctx, rec.ID); err != nil {
		t.Fatalf("A copies B's trace to the merged record: %v", err)
	}
}

// checkpointKeys returns the key fingerprints of a trace's stored checkpoints, in order.
func checkpointKeys(t *testing.T, st storage.Storage, ns, traceID string) []string {
	t.Helper()
	res, err := st.Scan(context.Background(), storage.ScanRequest{Namespace: ns, Prefix: ckptPrefix(traceID), Limit: storage.MaxScanLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range res.Items {
		var c Checkpoint
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Key)
	}
	return out
}

// TestBundleOfTrustedKeys: a bundle a host exports of a chain that a key it trusts signed
// in part lists that key in its signed header (format 3) and verifies offline against the
// exporting host's key alone; a bundle of the host's own chains stays format 2. Leaving a
// signer out of the header, adding one, or listing them in a format-2 header does not
// verify.
func TestBundleOfTrustedKeys(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	keyA, keyB := genKey(t), genKey(t)
	a := trustingStore(t, st, keyA, keyB)
	b := trustingStore(t, st, keyB, keyA)
	session := NewID()
	rec := traceIn(t, b, session, `{}`, 1, true)
	if _, err := a.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	own := traceIn(t, a, NewID(), `{}`, 1, false)

	var buf bytes.Buffer
	sum, err := a.WriteBundle(ctx, &buf, BundleScope{SessionID: session})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Format != BundleFormatSigners || !slices.Equal(sum.SignerFingerprints, []string{keyB.Fingerprint()}) || sum.KeyFingerprint != keyA.Fingerprint() {
		t.Fatalf("summary %+v: want format 3 signed by A naming B", sum)
	}
	got, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: keyA.PublicKey()})
	if err != nil || got.Checkpoints != sum.Checkpoints || !slices.Equal(got.SignerFingerprints, sum.SignerFingerprints) {
		t.Fatalf("verify against A's key: %+v %v", got, err)
	}
	// The bundle is A's: B's key alone does not verify it.
	if _, err := VerifyBundle(bytes.NewReader(buf.Bytes()), VerifyOptions{TrustedKey: keyB.PublicKey()}); !errors.Is(err, ErrBundle) {
		t.Errorf("verify against B's key: %v", err)
	}

	files := unpack(t, buf.Bytes())
	for _, tc := range []struct {
		name string
		edit func(*bundleHeader)
		want string
	}{
		{"signer left out", func(h *bundleHeader) { h.SignerKeys, h.Format = nil, BundleFormat }, "nor by a key it trusts"},
		{"format 2 with signers", func(h *bundleHeader) { h.Format = BundleFormat }, "only it, lists the other keys"},
		{"own key listed", func(h *bundleHeader) {
			h.SignerKeys = append(h.SignerKeys, hexKey(keyA))
			slices.Sort(h.SignerKeys)
		}, "the bundle's own key"},
		{"not a key", func(h *bundleHeader) { h.SignerKeys = []string{"zz"} }, "not the lower-case hex"},
		{"twice", func(h *bundleHeader) { h.SignerKeys = append(h.SignerKeys, h.SignerKeys[0]) }, "not distinct"},
	} {
		forged := resignHeader(t, files, keyA, tc.edit)
		_, err := VerifyBundle(bytes.NewReader(forged.pack(t)), VerifyOptions{TrustedKey: keyA.PublicKey()})
		if !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A signer listed by the header cannot be added without the bundle key's signature.
	ls := lines(files.data[BundleRecords])
	ls[0] = bytes.Replace(ls[0], []byte(hexKey(keyB)), []byte(hexKey(genKey(t))), 1)
	if _, err := VerifyBundle(bytes.NewReader(files.with(BundleRecords, bytes.Join(ls, nil)).pack(t)), VerifyOptions{}); !errors.Is(err, ErrBundle) {
		t.Errorf("a signer key swapped in the header: %v", err)
	}

	buf.Reset()
	sum, err = a.WriteBundle(ctx, &buf, BundleScope{TraceIDs: []string{own.ID}})
	if err != nil || sum.Format != BundleFormat || sum.SignerFingerprints != nil {
		t.Fatalf("bundle of A's own trace: %+v %v", sum, err)
	}
	if bytes.Contains(unpack(t, buf.Bytes()).data[BundleRecords], []byte("signer_keys")) {
		t.Error("a bundle of the host's own checkpoints lists signer_keys")
	}
}

func hexKey(k *Key) string { return hex.EncodeToString(k.PublicKey()) }

// resignHeader returns f with its header changed by edit and signed again with key; the
// checkpoints are left as they are.
func resignHeader(t *testing.T, f bundleFiles, key *Key, edit func(*bundleHeader)) bundleFiles {
	t.Helper()
	ls := lines(f.data[BundleRecords])
	var first bundleLine
	if err := json.Unmarshal(ls[0], &first); err != nil {
		t.Fatal(err)
	}
	h := *first.Bundle
	h.SignerKeys = slices.Clone(h.SignerKeys)
	edit(&h)
	h.Signature = ""
	h.Signature = key.sign(mustCanonical(t, h))
	ls[0] = append(mustCanonical(t, bundleLine{Type: "bundle", Bundle: &h}), '\n')
	return f.with(BundleRecords, bytes.Join(ls, nil))
}
