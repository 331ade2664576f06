package trace

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/limitgraph/limit/sdk/storage"
)

// A bundle is a gzip-compressed tar archive of three files:
//
//	public_key         the host's Ed25519 public key, PEM "PUBLIC KEY" (PKIX; openssl reads it)
//	records.jsonl      one canonical JSON object (RFC 8785) per line, each ending in "\n":
//	                     line 1: {"bundle":{header},"type":"bundle"}
//	                     then for each trace, in ascending id order:
//	                       {"trace":{Record},"type":"trace"}
//	                       {"entry":{Entry},"type":"entry"}   for every entry, index 0, 1, ...
//	checkpoints.jsonl  one canonical Checkpoint per line, grouped by trace in the order of
//	                   records.jsonl, by ascending length within a trace; the last checkpoint
//	                   of each trace covers its whole chain
//
// The header holds the format, creation time, tenant, scope (session_id or trace_ids), the
// number of traces, entries and checkpoints, the hex SHA-256 of records.jsonl after line 1
// and of checkpoints.jsonl, the key fingerprint, and a signature over its canonical JSON
// without "signature", so no line can be removed, added or changed unnoticed, even a whole
// trace. Every line must be byte for byte in canonical form.
//
// Checkpoints may be signed by other keys than the bundle's: those of the hosts the
// exporting host trusts (Options.TrustedKeys), whose chains it extends. The header then
// lists their public keys (signer_keys, hex, ascending), vouched for by its signature, and
// names format 3; a bundle whose checkpoints are all the bundle key's stays format 2, which
// older verifiers read.

// Bundle layout constants.
const (
	// BundleFormat is the format named in the header of the bundles this package writes.
	// Format 2 may carry optional members format 1 had not (a flag's set_by, a merged
	// entry's by), which a verifier of format 1 refuses as unknown: it says the format
	// instead of calling the bundle tampered with.
	BundleFormat = "limit-provenance-bundle/2"
	// BundleFormatSigners is the format of a bundle that holds checkpoints signed by other
	// keys than its own, whose public keys its header lists (signer_keys): a verifier of
	// format 2 would not know them, and says the format instead.
	BundleFormatSigners = "limit-provenance-bundle/3"
	// bundleFormat1 is the format of the bundles written before: VerifyBundle still reads
	// them (the last ones written with it may already carry format 2's members).
	bundleFormat1 = "limit-provenance-bundle/1"
	// BundleRecords, BundleCheckpoints and BundlePublicKey are the files of a bundle.
	BundleRecords     = "records.jsonl"
	BundleCheckpoints = "checkpoints.jsonl"
	BundlePublicKey   = "public_key"
	// maxBundleLine bounds one line of a bundle file: a record or entry as stored (at most
	// storage.MaxValueSize) in its line; the header with maxBundleTraces ids is smaller. A
	// line costs the verifier many times its size in memory to canonicalize.
	maxBundleLine = storage.MaxValueSize + 1<<10
	// maxBundleTraces bounds the trace ids one export may name.
	maxBundleTraces = 100000
	// maxSpool bounds a file that arrives before the one it depends on (the order limitd
	// writes needs none): a few bytes of archive can declare a terabyte (a sparse member, a
	// gzip bomb), which would otherwise go to the verifier's disk.
	maxSpool = 1 << 30
)

// BundleScope says what a bundle holds: every trace of SessionID, or the traces TraceIDs.
// Exactly one of them is set.
type BundleScope struct {
	SessionID string   `json:"session_id,omitempty"`
	TraceIDs  []string `json:"trace_ids,omitempty"`
}

// BundleSummary describes a bundle that was written or verified.
type BundleSummary struct {
	Format      string      `json:"format"`
	CreatedAt   time.Time   `json:"created_at"`
	Tenant      string      `json:"tenant"`
	Scope       BundleScope `json:"scope"`
	Traces      int64       `json:"traces"`
	Entries     int64       `json:"entries"`
	Checkpoints int64       `json:"checkpoints"`
	// KeyFingerprint is the Fingerprint of the key that signed the bundle; compare it with
	// the host's (limitd prints it) unless VerifyOptions.TrustedKey did.
	KeyFingerprint string `json:"key_fingerprint"`
	// SignerFingerprints are the Fingerprints of the other keys whose checkpoints the
	// bundle holds (keys the exporting host trusts), in the order of their public keys in
	// the header: the bundle's key vouches for them.
	SignerFingerprints []string `json:"signer_fingerprints,omitempty"`
}

// bundleHeader is the first line of records.jsonl.
type bundleHeader struct {
	Format            string      `json:"format"`
	CreatedAt         time.Time   `json:"created_at"`
	Tenant            string      `json:"tenant"`
	Scope             BundleScope `json:"scope"`
	Traces            int64       `json:"traces"`
	Entries           int64       `json:"entries"`
	Checkpoints       int64       `json:"checkpoints"`
	RecordsSHA256     string      `json:"records_sha256"`
	CheckpointsSHA256 string      `json:"checkpoints_sha256"`
	Key               string      `json:"key"`
	// SignerKeys are the other keys whose checkpoints the bundle holds, as the hex of
	// their 32 bytes, in ascending order (format 3 only).
	SignerKeys []string `json:"signer_keys,omitempty"`
	Signature  string   `json:"signature,omitempty"`
}

// bundleLine is one line of records.jsonl.
type bundleLine struct {
	Type   string          `json:"type"`
	Bundle *bundleHeader   `json:"bundle,omitempty"`
	Trace  json.RawMessage `json:"trace,omitempty"`
	Entry  json.RawMessage `json:"entry,omitempty"`
}

// ErrBundle is what every *BundleError wraps.
var ErrBundle = errors.New("bundle does not verify")

// BundleError names the first thing in a bundle that does not verify.
type BundleError struct {
	// File is the bundle file ("" for the archive itself), Line its 1-based line (0 when the
	// problem is not one line's).
	File string
	Line int
	// TraceID and Index locate the trace and entry concerned; Index is -1 when the problem is
	// not one entry's.
	TraceID string
	Index   int64
	Reason  string
}

// Error implements error, as "file:line: trace T entry I: reason".
func (e *BundleError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.TraceID != "" {
		fmt.Fprintf(&b, "trace %s", e.TraceID)
		if e.Index >= 0 {
			fmt.Fprintf(&b, " entry %d", e.Index)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns ErrBundle.
func (e *BundleError) Unwrap() error { return ErrBundle }

// DamagedError refuses an export of traces some of which do not verify: it names every one
// of them, and is ErrCorrupt (and ErrForeignKey when the first is signed by a key the host
// neither holds nor trusts).
type DamagedError struct {
	// TraceIDs are the traces that do not verify, in the order of the export.
	TraceIDs []string
	// First is why the first of them does not.
	First error
}

func (e *DamagedError) Error() string {
	if len(e.TraceIDs) == 1 {
		return fmt.Sprintf("export: %v", e.First)
	}
	return fmt.Sprintf("export: %d traces do not verify (%s); the first: %v", len(e.TraceIDs), strings.Join(e.TraceIDs, ", "), e.First)
}

// Unwrap returns why the first trace does not verify, which is ErrCorrupt.
func (e *DamagedError) Unwrap() error { return e.First }

// WriteBundle writes the bundle of scope to w (see the format above) and returns its summary.
// Every trace is verified first; traces that do not verify (entries that no checkpoint signed
// by the host, or a key it trusts, covers included) fail the export with a *DamagedError,
// which is ErrCorrupt and names all of them: a bundle holds all of its scope or is not
// made. Trace ids that do not exist fail with ErrNotFound; a session without traces gives
// an empty bundle (the caller checks that the session exists).
func (s *Store) WriteBundle(ctx context.Context, w io.Writer, scope BundleScope) (BundleSummary, error) {
	locs, scope, err := s.bundleTraces(ctx, scope)
	if err != nil {
		return BundleSummary{}, err
	}
	recs, err := newSpool(s.tempDir)
	if err != nil {
		return BundleSummary{}, err
	}
	defer recs.discard()
	ckps, err := newSpool(s.tempDir)
	if err != nil {
		return BundleSummary{}, err
	}
	defer ckps.discard()

	h := bundleHeader{Format: BundleFormat, CreatedAt: s.timestamp(), Tenant: s.tenant, Scope: scope, Key: s.key.Fingerprint()}
	signers := map[string]bool{}
	var damaged *DamagedError
	for _, loc := range locs {
		if err := ctx.Err(); err != nil {
			return BundleSummary{}, err
		}
		snap, err := s.snapshot(ctx, loc)
		if errors.Is(err, ErrCorrupt) {
			// The others are still checked, so that the refusal names every one.
			if damaged == nil {
				damaged = &DamagedError{First: err}
			}
			damaged.TraceIDs = append(damaged.TraceIDs, loc.traceID)
			continue
		}
		if err != nil {
			return BundleSummary{}, fmt.Errorf("export: %w", err)
		}
		if damaged != nil {
			continue
		}
		rraw, err := canonicalJSON(snap.rec)
		if err != nil {
			return BundleSummary{}, fmt.Errorf("export trace %s: %w", loc.traceID, err)
		}
		if err := recs.line(bundleLine{Type: "trace", Trace: rraw}); err != nil {
			return BundleSummary{}, err
		}
		for _, raw := range snap.entries {
			if err := recs.line(bundleLine{Type: "entry", Entry: raw}); err != nil {
				return BundleSummary{}, err
			}
		}
		for _, raw := range snap.ckpts {
			if err := ckps.raw(raw); err != nil {
				return BundleSummary{}, err
			}
		}
		for fp := range snap.signers {
			signers[fp] = true
		}
		h.Traces++
		h.Entries += int64(len(snap.entries))
		h.Checkpoints += int64(len(snap.ckpts))
	}
	if damaged != nil {
		return BundleSummary{}, damaged
	}
	delete(signers, h.Key)
	for fp := range signers {
		pub, _ := s.keys.get(fp) // the snapshot verified its checkpoints with it
		h.SignerKeys = append(h.SignerKeys, hex.EncodeToString(pub))
	}
	if len(h.SignerKeys) > 0 {
		slices.Sort(h.SignerKeys)
		h.Format = BundleFormatSigners
	}
	if h.RecordsSHA256, err = recs.finish(); err != nil {
		return BundleSummary{}, err
	}
	if h.CheckpointsSHA256, err = ckps.finish(); err != nil {
		return BundleSummary{}, err
	}
	msg, err := canonicalJSON(h)
	if err != nil {
		return BundleSummary{}, fmt.Errorf("encode bundle header: %w", err)
	}
	h.Signature = s.key.sign(msg)
	headerLine, err := canonicalJSON(bundleLine{Type: "bundle", Bundle: &h})
	if err != nil {
		return BundleSummary{}, fmt.Errorf("encode bundle header: %w", err)
	}
	headerLine = append(headerLine, '\n')

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	// tar keeps whole seconds and rounds to the nearest: truncated, a file's time is never
	// after the bundle's (tar -x would warn of a time stamp in the future).
	modTime := h.CreatedAt.Truncate(time.Second)
	file := func(name string, size int64, parts ...io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: modTime, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		if _, err := io.Copy(tw, io.MultiReader(parts...)); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		return nil
	}
	pem := MarshalPublicKey(s.key.PublicKey())
	if err := file(BundlePublicKey, int64(len(pem)), bytes.NewReader(pem)); err != nil {
		return BundleSummary{}, err
	}
	if err := file(BundleRecords, int64(len(headerLine))+recs.size, bytes.NewReader(headerLine), recs.reader()); err != nil {
		return BundleSummary{}, err
	}
	if err := file(BundleCheckpoints, ckps.size, ckps.reader()); err != nil {
		return BundleSummary{}, err
	}
	if err := tw.Close(); err != nil {
		return BundleSummary{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := gz.Close(); err != nil {
		return BundleSummary{}, fmt.Errorf("write bundle: %w", err)
	}
	return h.summary(), nil
}

func (h *bundleHeader) summary() BundleSummary {
	sum := BundleSummary{
		Format: h.Format, CreatedAt: h.CreatedAt, Tenant: h.Tenant, Scope: h.Scope,
		Traces: h.Traces, Entries: h.Entries, Checkpoints: h.Checkpoints, KeyFingerprint: h.Key,
	}
	for _, k := range h.SignerKeys {
		b, _ := hex.DecodeString(k) // checked by readHeader, written by WriteBundle
		sum.SignerFingerprints = append(sum.SignerFingerprints, Fingerprint(b))
	}
	return sum
}

// bundleTraces resolves a scope to the traces it names, in ascending id order, and returns
// the scope with its trace ids sorted and without duplicates.
func (s *Store) bundleTraces(ctx context.Context, scope BundleScope) ([]location, BundleScope, error) {
	switch {
	case (scope.SessionID == "") == (len(scope.TraceIDs) == 0):
		return nil, scope, fmt.Errorf("%w: export needs a session id or trace ids, not both", ErrInvalid)
	case scope.SessionID != "":
		if !ValidID(scope.SessionID) {
			return nil, scope, fmt.Errorf("%w: %s is not a session id", ErrNotFound, quoteID(scope.SessionID))
		}
		var locs []location
		err := s.scan(ctx, SessionNamespace(s.tenant, scope.SessionID), recordPrefix, nil, true, func(key, _ []byte) error {
			id := string(key[len(recordPrefix):])
			if !ValidID(id) {
				return fmt.Errorf("%w: session %s holds a record under key %q", ErrCorrupt, scope.SessionID, key)
			}
			locs = append(locs, s.sessionLocation(id, scope.SessionID))
			return nil
		})
		return locs, scope, err
	}
	if len(scope.TraceIDs) > maxBundleTraces {
		return nil, scope, fmt.Errorf("%w: export names %d traces, the limit is %d", ErrInvalid, len(scope.TraceIDs), maxBundleTraces)
	}
	ids := slices.Clone(scope.TraceIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	locs := make([]location, 0, len(ids))
	for _, id := range ids {
		// A merged trace of a purged session is exported from its copy in the shared
		// record (see PurgeSession).
		var loc location
		err := s.read(ctx, id, func(l location) error {
			loc = l
			_, _, err := s.loadRecord(ctx, l)
			if errors.Is(err, ErrNotFound) {
				return err
			}
			return nil // what does not verify, the snapshot reports
		})
		if err != nil {
			return nil, scope, err
		}
		locs = append(locs, loc)
	}
	return locs, BundleScope{TraceIDs: ids}, nil
}

// spool collects one bundle file in a temporary file (tar needs sizes up front) and hashes it.
type spool struct {
	f    *os.File
	w    *bufio.Writer
	h    hash.Hash
	size int64
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "limit-bundle-*")
	if err != nil {
		return nil, fmt.Errorf("export: create spool file: %w", err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 1<<16), h: sha256.New()}, nil
}

// line writes l as a canonical JSON line.
func (s *spool) line(l bundleLine) error {
	b, err := canonicalJSON(l)
	if err != nil {
		return fmt.Errorf("export: encode line: %w", err)
	}
	return s.raw(b)
}

// raw writes b, already canonical, as a line.
func (s *spool) raw(b []byte) error {
	for _, p := range [][]byte{b, {'\n'}} {
		if _, err := s.w.Write(p); err != nil {
			return fmt.Errorf("export: write spool file: %w", err)
		}
		s.h.Write(p)
		s.size += int64(len(p))
	}
	return nil
}

// finish flushes the spool and returns the hex SHA-256 of its content.
func (s *spool) finish() (string, error) {
	if err := s.w.Flush(); err != nil {
		return "", fmt.Errorf("export: write spool file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("export: rewind spool file: %w", err)
	}
	return hex.EncodeToString(s.h.Sum(nil)), nil
}

func (s *spool) reader() io.Reader { return bufio.NewReaderSize(s.f, 1<<16) }

func (s *spool) discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// VerifyOptions tunes VerifyBundle.
type VerifyOptions struct {
	// TrustedKey, when set, is the only key the bundle may be signed with. Without it the
	// bundle's own public_key is used, and the summary's KeyFingerprint must be compared
	// with the host's by the reader. Either way, the checkpoints may also be signed by the
	// keys the bundle's signed header lists (signer_keys): the bundle's key vouches for
	// them.
	TrustedKey ed25519.PublicKey
	// TempDir is where files that arrive out of order in the archive are spooled;
	// os.TempDir() when empty.
	TempDir string
}

// VerifyBundle checks a bundle offline and returns its summary, or a *BundleError (wrapping
// ErrBundle) naming the first record that does not verify: a changed byte in any line, a
// line removed, added or moved, a chain cut short (its latest signed checkpoint no longer
// matches), trace data that no longer matches the hash in its "created" entry, a checkpoint
// altered or signed by a key neither the bundle's nor one its header lists.
func VerifyBundle(r io.Reader, opts VerifyOptions) (BundleSummary, error) {
	v := &bundleVerifier{opts: opts, traces: map[string]*traceState{}}
	archiveErr := func(format string, args ...any) (BundleSummary, error) {
		return BundleSummary{}, &BundleError{Index: -1, Reason: fmt.Sprintf(format, args...)}
	}
	// The first bytes tell a gzip header cut short from input that is not gzip at all
	// (both end early for gzip.NewReader).
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2)
	gz, err := gzip.NewReader(br)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && len(magic) > 0 && bytes.HasPrefix([]byte{0x1f, 0x8b}, magic) {
			return BundleSummary{}, cutShort("", "in its gzip header")
		}
		return archiveErr("not a gzip file: %v", err)
	}
	tr := tar.NewReader(gz)
	var pending []string
	spooled := map[string]*os.File{}
	defer func() {
		for _, f := range spooled {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return BundleSummary{}, cutShort("", "between its files")
		}
		if err != nil {
			return archiveErr("reading the tar archive: %v", err)
		}
		name := path.Clean(hdr.Name)
		if hdr.Typeflag == tar.TypeDir && name == "." {
			continue
		}
		if name != BundlePublicKey && name != BundleRecords && name != BundleCheckpoints {
			return archiveErr("unexpected file %q in the archive (a bundle holds %s, %s and %s)", hdr.Name, BundlePublicKey, BundleRecords, BundleCheckpoints)
		}
		if hdr.Typeflag != tar.TypeReg {
			return archiveErr("%s is not a regular file in the archive", name)
		}
		if seen[name] {
			return archiveErr("%s appears twice in the archive", name)
		}
		seen[name] = true
		if v.ready(name) {
			if err := v.process(name, tr); err != nil {
				return BundleSummary{}, err
			}
			continue
		}
		if hdr.Size > maxSpool {
			return archiveErr("%s comes before the files it depends on in the archive and is %d bytes, more than the %d this verifier sets aside; put the files in the order %s, %s, %s (as limitd writes them)", name, hdr.Size, int64(maxSpool), BundlePublicKey, BundleRecords, BundleCheckpoints)
		}
		f, err := os.CreateTemp(opts.TempDir, "limit-verify-*")
		if err != nil {
			return BundleSummary{}, fmt.Errorf("verify bundle: %w", err)
		}
		spooled[name] = f
		pending = append(pending, name)
		if _, err := io.Copy(f, tr); errors.Is(err, io.ErrUnexpectedEOF) {
			return BundleSummary{}, cutShort(name, "in this file")
		} else if err != nil {
			return archiveErr("reading %s: %v", name, err)
		}
	}
	// Read to the end of the gzip stream, so its checksum is checked; after the archive's
	// end there may be only the zero padding tar writes.
	rest, err := io.ReadAll(io.LimitReader(gz, 1<<20))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BundleSummary{}, cutShort("", "after its last file, before the end of its gzip stream")
	}
	if err != nil {
		return archiveErr("gzip stream: %v", err)
	}
	if len(bytes.Trim(rest, "\x00")) != 0 || len(rest) == 1<<20 {
		return archiveErr("data after the end of the tar archive")
	}
	for _, name := range []string{BundlePublicKey, BundleRecords, BundleCheckpoints} {
		if !seen[name] {
			return archiveErr("%s is missing from the archive", name)
		}
	}
	for len(pending) > 0 {
		progressed := false
		for i, name := range pending {
			if !v.ready(name) {
				continue
			}
			f := spooled[name]
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return BundleSummary{}, fmt.Errorf("verify bundle: %w", err)
			}
			if err := v.process(name, f); err != nil {
				return BundleSummary{}, err
			}
			pending = slices.Delete(pending, i, i+1)
			progressed = true
			break
		}
		if !progressed {
			return archiveErr("cannot order the files of the archive")
		}
	}
	return v.header.summary(), nil
}

// cutShort is the error of an archive whose gzip or tar stream ends early (io.ErrUnexpectedEOF
// from either): not a fault in the file being read when it happened, which "unexpected EOF"
// at a line suggests, but a bundle truncated on its way (a download or copy interrupted,
// a disk that filled). file is the member it ended in, if any; where says where it ended.
func cutShort(file, where string) *BundleError {
	return &BundleError{File: file, Index: -1, Reason: fmt.Sprintf(
		"the archive is cut short: it ends %s; the bundle was truncated (an interrupted download or copy, or a full disk?): export or copy it again", where)}
}

// bundleVerifier is the state of one VerifyBundle.
type bundleVerifier struct {
	opts   VerifyOptions
	pub    ed25519.PublicKey
	header bundleHeader
	// keys are the keys checkpoints may be signed with: pub and the header's signer_keys.
	keys keyring

	recordsDone bool
	traces      map[string]*traceState
	order       []*traceState
	cur         *traceState
	entries     int64
	// recordsChanged is the error of a records file that does not match the digest in its
	// signed header. It is reported after the checkpoints are read: they locate an entry
	// that was changed (and the hashes after it recomputed) by the first head they sign
	// that the chain no longer has.
	recordsChanged error
}

// traceState is what the verifier knows about one trace of the bundle.
type traceState struct {
	pos    int
	line   int
	rec    Record
	replay *replayer
	hashes []string
	// lines holds the line of each entry in records.jsonl.
	lines []int
	// Checkpoints seen: how many, the last length and its line.
	ckpts    int64
	ckptLen  int64
	ckptLine int
}

func (v *bundleVerifier) ready(name string) bool {
	switch name {
	case BundleRecords:
		return v.pub != nil
	case BundleCheckpoints:
		return v.recordsDone
	}
	return true
}

func (v *bundleVerifier) process(name string, r io.Reader) error {
	switch name {
	case BundlePublicKey:
		b, err := io.ReadAll(io.LimitReader(r, 4096))
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return cutShort(name, "in this file")
		}
		if err != nil {
			return &BundleError{File: name, Index: -1, Reason: err.Error()}
		}
		pub, err := ParsePublicKey(b)
		if err != nil {
			return &BundleError{File: name, Index: -1, Reason: err.Error()}
		}
		if v.opts.TrustedKey != nil && !pub.Equal(v.opts.TrustedKey) {
			return &BundleError{File: name, Index: -1, Reason: fmt.Sprintf("the bundle's key %s is not the trusted key %s", Fingerprint(pub), Fingerprint(v.opts.TrustedKey))}
		}
		v.pub = pub
		return nil
	case BundleRecords:
		err := v.records(r)
		v.recordsDone = true
		return err
	default:
		if err := v.checkpoints(r); err != nil {
			return err
		}
		return v.recordsChanged
	}
}

// lineReader reads lines that each end in "\n", at most maxBundleLine bytes.
type lineReader struct {
	file string
	r    *bufio.Reader
	n    int
	buf  []byte
}

// next returns the next line without its newline, or io.EOF after the last one.
func (l *lineReader) next() ([]byte, error) {
	l.buf = l.buf[:0]
	for {
		frag, err := l.r.ReadSlice('\n')
		l.buf = append(l.buf, frag...)
		if len(l.buf) > maxBundleLine+1 {
			return nil, &BundleError{File: l.file, Line: l.n + 1, Index: -1, Reason: fmt.Sprintf("line longer than %d bytes", maxBundleLine)}
		}
		switch {
		case err == nil:
			l.n++
			line := l.buf[:len(l.buf)-1]
			if len(line) == 0 {
				return nil, &BundleError{File: l.file, Line: l.n, Index: -1, Reason: "empty line"}
			}
			return line, nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(l.buf) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, &BundleError{File: l.file, Line: l.n + 1, Index: -1, Reason: "last line does not end with a newline (the file is cut short)"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, cutShort(l.file, fmt.Sprintf("in this file, after line %d", l.n))
		default:
			return nil, &BundleError{File: l.file, Line: l.n + 1, Index: -1, Reason: err.Error()}
		}
	}
}

func (v *bundleVerifier) records(r io.Reader) error {
	lr := &lineReader{file: BundleRecords, r: bufio.NewReaderSize(r, 1<<16)}
	fail := func(line int, traceID string, index int64, format string, args ...any) error {
		return &BundleError{File: BundleRecords, Line: line, TraceID: traceID, Index: index, Reason: fmt.Sprintf(format, args...)}
	}
	first, err := lr.next()
	if err == io.EOF {
		return fail(1, "", -1, "the file is empty; line 1 must be the bundle header")
	}
	if err != nil {
		return err
	}
	if err := v.readHeader(first); err != nil {
		return fail(1, "", -1, "%v", err)
	}
	digest := sha256.New()
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		digest.Write(line)
		digest.Write([]byte{'\n'})
		var l bundleLine
		if err := decodeExact(line, &l); err != nil {
			return fail(lr.n, "", -1, "malformed line: %v", err)
		}
		switch {
		case l.Type == "trace" && l.Bundle == nil && l.Entry == nil && l.Trace != nil:
			if err := v.finishTrace(); err != nil {
				return err
			}
			if err := v.startTrace(lr.n, l.Trace); err != nil {
				return err
			}
		case l.Type == "entry" && l.Bundle == nil && l.Trace == nil && l.Entry != nil:
			if v.cur == nil {
				return fail(lr.n, "", -1, "entry before any trace record")
			}
			t := v.cur
			index := t.replay.rec.Length
			if _, err := t.replay.add(l.Entry); err != nil {
				// Entry 0 intact but not matching the record before it: the record changed.
				if errors.Is(err, errDataMismatch) || index == 0 && errors.Is(err, errForeignEntry) {
					return fail(t.line, t.rec.ID, -1, "%v", err)
				}
				return fail(lr.n, t.rec.ID, index, "%v", err)
			}
			t.hashes = append(t.hashes, t.replay.rec.Head)
			t.lines = append(t.lines, lr.n)
			v.entries++
		default:
			return fail(lr.n, "", -1, "line of type %q with the wrong members", l.Type)
		}
	}
	if err := v.finishTrace(); err != nil {
		return err
	}
	h := v.header
	end := lr.n + 1
	switch {
	case int64(len(v.order)) != h.Traces:
		return fail(end, "", -1, "the signed header (line 1) counts %d traces but the file holds %d: records were removed or added", h.Traces, len(v.order))
	case v.entries != h.Entries:
		return fail(end, "", -1, "the signed header (line 1) counts %d entries but the file holds %d: records were removed or added", h.Entries, v.entries)
	case len(h.Scope.TraceIDs) > 0 && len(v.order) != len(h.Scope.TraceIDs):
		return fail(end, "", -1, "the bundle's scope names %d traces but the file holds %d", len(h.Scope.TraceIDs), len(v.order))
	case hex.EncodeToString(digest.Sum(nil)) != h.RecordsSHA256:
		v.recordsChanged = fail(0, "", -1, "the file does not match the SHA-256 in its signed header")
	}
	return nil
}

// readHeader checks the bundle header line.
func (v *bundleVerifier) readHeader(raw []byte) error {
	var l bundleLine
	if err := decodeExact(raw, &l); err != nil {
		return fmt.Errorf("malformed bundle header: %w", err)
	}
	if l.Type != "bundle" || l.Bundle == nil || l.Trace != nil || l.Entry != nil {
		return fmt.Errorf("line 1 must be the bundle header, found a line of type %q", l.Type)
	}
	h := *l.Bundle
	if h.Format != BundleFormat && h.Format != bundleFormat1 && h.Format != BundleFormatSigners {
		return fmt.Errorf("bundle format %q, this verifier reads %q, %q and %q: verify it with a newer limitctl", h.Format, bundleFormat1, BundleFormat, BundleFormatSigners)
	}
	if fp := Fingerprint(v.pub); h.Key != fp {
		return fmt.Errorf("header names key %s but the bundle's public_key is %s", h.Key, fp)
	}
	sig, err := hex.DecodeString(h.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("header signature is not a hex Ed25519 signature")
	}
	body := h
	body.Signature = ""
	msg, err := canonicalJSON(body)
	if err != nil {
		return err
	}
	if !ed25519.Verify(v.pub, msg, sig) {
		return errors.New("header signature does not verify with the bundle's public key")
	}
	signers, err := signerKeys(h, v.pub)
	if err != nil {
		return err
	}
	v.keys = newKeyring(v.pub, signers...)
	if !ValidTenant(h.Tenant) {
		return fmt.Errorf("header names tenant %q", h.Tenant)
	}
	sc := h.Scope
	if (sc.SessionID == "") == (len(sc.TraceIDs) == 0) {
		return errors.New("header scope must name a session or trace ids")
	}
	if sc.SessionID != "" && !ValidID(sc.SessionID) {
		return fmt.Errorf("header scope names session %q", sc.SessionID)
	}
	for i, id := range sc.TraceIDs {
		if !ValidID(id) || i > 0 && id <= sc.TraceIDs[i-1] {
			return errors.New("header scope's trace ids are not distinct valid ids in ascending order")
		}
	}
	v.header = h
	return nil
}

// signerKeys checks and decodes the signer_keys of a header signed by pub: in format 3 only,
// where there is at least one, distinct Ed25519 public keys other than pub, in ascending
// order.
func signerKeys(h bundleHeader, pub ed25519.PublicKey) ([]ed25519.PublicKey, error) {
	if (len(h.SignerKeys) > 0) != (h.Format == BundleFormatSigners) {
		return nil, fmt.Errorf("a bundle of format %q has %d signer_keys: format %q, and only it, lists the other keys that signed checkpoints", h.Format, len(h.SignerKeys), BundleFormatSigners)
	}
	own := hex.EncodeToString(pub)
	out := make([]ed25519.PublicKey, 0, len(h.SignerKeys))
	for i, k := range h.SignerKeys {
		b, err := hex.DecodeString(k)
		switch {
		case err != nil || len(b) != ed25519.PublicKeySize || k != hex.EncodeToString(b):
			return nil, fmt.Errorf("header's signer_keys[%d] is not the lower-case hex of a %d-byte Ed25519 public key", i, ed25519.PublicKeySize)
		case k == own:
			return nil, fmt.Errorf("header's signer_keys[%d] is the bundle's own key", i)
		case i > 0 && k <= h.SignerKeys[i-1]:
			return nil, errors.New("header's signer_keys are not distinct and in ascending order")
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

// errDataMismatch marks the "created" entry's data hash disagreeing with the trace's data.
var errDataMismatch = errors.New("trace data altered")

func (v *bundleVerifier) startTrace(line int, raw []byte) error {
	fail := func(traceID, format string, args ...any) error {
		return &BundleError{File: BundleRecords, Line: line, TraceID: traceID, Index: -1, Reason: fmt.Sprintf(format, args...)}
	}
	rec, err := parseRecord(raw)
	if err != nil {
		return fail("", "%v", err)
	}
	sc := v.header.Scope
	switch {
	case len(v.order) > 0 && rec.ID <= v.order[len(v.order)-1].rec.ID:
		return fail(rec.ID, "traces are not in ascending id order (follows %s): records were moved", v.order[len(v.order)-1].rec.ID)
	case rec.Tenant != v.header.Tenant:
		return fail(rec.ID, "trace of tenant %q in a bundle of tenant %q", rec.Tenant, v.header.Tenant)
	case sc.SessionID != "" && rec.SessionID != sc.SessionID:
		return fail(rec.ID, "trace of session %s in the bundle of session %s", rec.SessionID, sc.SessionID)
	case len(sc.TraceIDs) > 0 && (len(v.order) >= len(sc.TraceIDs) || sc.TraceIDs[len(v.order)] != rec.ID):
		return fail(rec.ID, "not the next trace the bundle's scope names: a trace was removed or added")
	}
	t := &traceState{pos: len(v.order), line: line, rec: rec, replay: newReplayer(rec.ID, rec.SessionID, rec.Data)}
	v.traces[rec.ID] = t
	v.order = append(v.order, t)
	v.cur = t
	return nil
}

// finishTrace checks the current trace's record against its complete chain.
func (v *bundleVerifier) finishTrace() error {
	t := v.cur
	if t == nil {
		return nil
	}
	v.cur = nil
	fail := func(format string, args ...any) error {
		return &BundleError{File: BundleRecords, Line: t.line, TraceID: t.rec.ID, Index: -1, Reason: fmt.Sprintf(format, args...)}
	}
	if t.replay.rec.Length == 0 {
		return fail("trace record is not followed by its provenance entries")
	}
	if err := compareDerived(t.rec, t.replay.rec); err != nil {
		return fail("%v", err)
	}
	// Checkpoints need only the hashes; let the data go.
	t.rec.Data, t.rec.Flags, t.replay = nil, nil, nil
	return nil
}

// changedEntry reports, in a records file that does not match its digest, the entry that
// checkpoint c (on line ckptLine) finds changed: its head is not the chain's, while the
// trace's checkpoints before it matched. One of the entries from the first that those did
// not cover to c's last was changed, and every hash after it recomputed; a checkpoint per
// write makes that one entry, or the entries of one write.
func (v *bundleVerifier) changedEntry(t *traceState, c Checkpoint, ckptLine int) error {
	first, last := t.ckptLen, c.Length-1
	which := "this entry was changed"
	if last > first {
		which = fmt.Sprintf("this entry or one after it up to entry %d was changed", last)
	}
	return &BundleError{File: BundleRecords, Line: t.lines[first], TraceID: t.rec.ID, Index: first, Reason: fmt.Sprintf(
		"%s and the hashes after it recomputed: the file does not match the SHA-256 in its signed header, and the checkpoint on %s line %d signs head %s for entry %d, which now has hash %s",
		which, BundleCheckpoints, ckptLine, c.Head, last, t.hashes[last])}
}

func (v *bundleVerifier) checkpoints(r io.Reader) error {
	lr := &lineReader{file: BundleCheckpoints, r: bufio.NewReaderSize(r, 1<<16)}
	fail := func(line int, traceID string, format string, args ...any) error {
		return &BundleError{File: BundleCheckpoints, Line: line, TraceID: traceID, Index: -1, Reason: fmt.Sprintf(format, args...)}
	}
	digest := sha256.New()
	var count int64
	pos := 0 // index in v.order of the trace whose checkpoints are being read
	// done checks that trace t's checkpoints ended with one covering its whole chain.
	done := func(t *traceState, line int) error {
		if t.ckpts == 0 {
			return fail(line, t.rec.ID, "no signed checkpoint for this trace: checkpoints were removed")
		}
		if n := int64(len(t.hashes)); t.ckptLen != n {
			return fail(t.ckptLine, t.rec.ID, "the latest signed checkpoint covers %d entries but the chain has %d: entries or checkpoints were removed", t.ckptLen, n)
		}
		return nil
	}
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		digest.Write(line)
		digest.Write([]byte{'\n'})
		count++
		c, err := parseCheckpoint(line, v.keys)
		if err != nil {
			return fail(lr.n, "", "%v", err)
		}
		t := v.traces[c.TraceID]
		switch {
		case t == nil:
			return fail(lr.n, c.TraceID, "checkpoint of a trace that is not in %s", BundleRecords)
		case t.pos < pos || t.pos == pos && c.Length <= t.ckptLen:
			return fail(lr.n, c.TraceID, "checkpoint of length %d is out of order: checkpoints were moved", c.Length)
		case c.SessionID != t.rec.SessionID:
			return fail(lr.n, c.TraceID, "checkpoint names session %s, the trace is in session %s", c.SessionID, t.rec.SessionID)
		case c.Length > int64(len(t.hashes)):
			return fail(lr.n, c.TraceID, "checkpoint signs a chain of %d entries but the bundle holds %d: entries were removed", c.Length, len(t.hashes))
		case c.Head != t.hashes[c.Length-1] && v.recordsChanged != nil:
			return v.changedEntry(t, c, lr.n)
		case c.Head != t.hashes[c.Length-1]:
			return fail(lr.n, c.TraceID, "checkpoint signs head %s but entry %d has hash %s", c.Head, c.Length-1, t.hashes[c.Length-1])
		}
		for ; pos < t.pos; pos++ {
			if err := done(v.order[pos], lr.n); err != nil {
				return err
			}
		}
		t.ckpts++
		t.ckptLen = c.Length
		t.ckptLine = lr.n
	}
	for ; pos < len(v.order); pos++ {
		if err := done(v.order[pos], lr.n+1); err != nil {
			return err
		}
	}
	switch {
	case count != v.header.Checkpoints:
		return fail(lr.n+1, "", "the signed header (%s line 1) counts %d checkpoints but the file holds %d: checkpoints were removed or added", BundleRecords, v.header.Checkpoints, count)
	case hex.EncodeToString(digest.Sum(nil)) != v.header.CheckpointsSHA256:
		return fail(0, "", "the file does not match the SHA-256 in the signed header")
	}
	return nil
}
