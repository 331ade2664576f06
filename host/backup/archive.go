package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// maxDataBytes bounds the data_dir files of an archive, which Open holds in memory.
const maxDataBytes = 256 << 20

// maxLine bounds one line of storage.jsonl: a value of storage.MaxValueSize, base64, and
// its key and namespace.
const maxLine = storage.MaxValueSize/3*4 + 4*storage.MaxKeySize + 2*storage.MaxNamespaceSize + 64

// Archive is a backup opened for a restore, checked whole by Open.
type Archive struct {
	path     string
	allowed  func(rel string) bool
	Manifest Manifest
	// Files are the data_dir files, by path relative to it.
	Files map[string][]byte
}

// Open reads the archive at path through once and checks it: its manifest first and of
// Format, every data_dir file it lists present once with its size and digest and nothing
// else, safe paths, and the storage copy's digest, size, key and namespace counts and
// order, every item within the protocol's limits. Nothing is written. allowed, when set,
// says which data_dir paths a backup may hold: a manifest listing another is refused before
// any member is read.
func Open(p string, allowed func(rel string) bool) (*Archive, error) {
	a := &Archive{path: p, allowed: allowed, Files: map[string][]byte{}}
	err := a.walk(func(tr *tar.Reader, hdr *tar.Header) error {
		switch {
		case strings.HasPrefix(hdr.Name, dataPrefix):
			return a.readFile(tr, hdr)
		case hdr.Name == StorageName:
			return a.readStorage(context.Background(), tr, nil)
		}
		return fmt.Errorf("member %q is not part of a backup", hdr.Name)
	})
	if err != nil {
		return nil, err
	}
	for _, f := range a.Manifest.Files {
		if _, ok := a.Files[f.Path]; !ok {
			return nil, fmt.Errorf("%s: the manifest lists %s, which the archive does not hold: it is cut short or was changed", p, f.Path)
		}
	}
	return a, nil
}

// walk opens the archive and calls member for every member after the manifest, which it
// reads into a.Manifest and checks. The storage copy must be the last member.
func (a *Archive) walk(member func(tr *tar.Reader, hdr *tar.Header) error) error {
	f, err := os.Open(a.path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s is not a limitd backup (not gzip-compressed: %v)", a.path, err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		return fmt.Errorf("%s is not a limitd backup (no tar archive in it: %v)", a.path, err)
	}
	if hdr.Name != ManifestName {
		return fmt.Errorf("%s is not a limitd backup: its first member is %q, not %s", a.path, hdr.Name, ManifestName)
	}
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(tr, 16<<20))
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%s: its manifest does not decode: %v", a.path, err)
	}
	if m.Format != Format {
		return fmt.Errorf("%s: backup format %q; this limitd reads %s", a.path, m.Format, Format)
	}
	seen := map[string]bool{}
	total := int64(0)
	for _, f := range m.Files {
		switch {
		case seen[f.Path]:
			return fmt.Errorf("%s: its manifest lists %s twice", a.path, f.Path)
		case a.allowed != nil && !a.allowed(f.Path):
			return fmt.Errorf("%s: its manifest lists %q, which is not a file a backup holds", a.path, f.Path)
		case f.Size < 0:
			return fmt.Errorf("%s: its manifest gives %s a size of %d", a.path, f.Path, f.Size)
		}
		seen[f.Path] = true
		total += f.Size
	}
	if total > maxDataBytes {
		return fmt.Errorf("%s: its manifest lists %d bytes of data_dir files, more than the %d a backup holds", a.path, total, maxDataBytes)
	}
	a.Manifest = m
	sawStorage := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s is damaged or cut short: %v", a.path, err)
		}
		if sawStorage {
			return fmt.Errorf("%s: member %q after %s", a.path, hdr.Name, StorageName)
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("%s: member %q is not a regular file", a.path, hdr.Name)
		}
		if err := member(tr, hdr); err != nil {
			return err
		}
		sawStorage = hdr.Name == StorageName
	}
	if !sawStorage {
		return fmt.Errorf("%s holds no %s: it is cut short", a.path, StorageName)
	}
	return nil
}

// readFile reads a data_dir member, checking it against the manifest.
func (a *Archive) readFile(tr *tar.Reader, hdr *tar.Header) error {
	rel := strings.TrimPrefix(hdr.Name, dataPrefix)
	if rel == "" || path.Clean(rel) != rel || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s: member %q has an unsafe path", a.path, hdr.Name)
	}
	var want *File
	for i := range a.Manifest.Files {
		if a.Manifest.Files[i].Path == rel {
			want = &a.Manifest.Files[i]
		}
	}
	if want == nil {
		return fmt.Errorf("%s: member %q is not in its manifest", a.path, hdr.Name)
	}
	if _, dup := a.Files[rel]; dup {
		return fmt.Errorf("%s: member %q appears twice", a.path, hdr.Name)
	}
	if hdr.Size != want.Size {
		return fmt.Errorf("%s: member %q has %d bytes, its manifest says %d", a.path, hdr.Name, hdr.Size, want.Size)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return fmt.Errorf("%s is damaged or cut short: %v", a.path, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want.SHA256 {
		return fmt.Errorf("%s: member %q does not match its SHA-256 in the manifest: it was changed or damaged", a.path, hdr.Name)
	}
	a.Files[rel] = b
	return nil
}

// readStorage reads the storage copy, checking every item and, at its end, the counts and
// digest; fn, when set, gets each item.
func (a *Archive) readStorage(ctx context.Context, r io.Reader, fn func(ns string, key, value []byte) error) error {
	h := sha256.New()
	cw := &countWriter{w: h}
	br := bufio.NewReaderSize(io.TeeReader(r, cw), 1<<20)
	var (
		keys, namespaces int64
		lastNS           string
		lastKey          []byte
		line             int64
	)
	for {
		b, err := readLine(br)
		if errors.Is(err, io.EOF) && len(b) == 0 {
			break
		}
		line++
		if err != nil {
			return fmt.Errorf("%s is damaged or cut short: %s line %d: %v", a.path, StorageName, line, err)
		}
		var it storageItem
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&it); err != nil {
			return fmt.Errorf("%s: %s line %d does not decode: %v", a.path, StorageName, line, err)
		}
		if it.V == nil {
			it.V = []byte{}
		}
		if err := errors.Join(storage.ValidateNamespace(it.N), storage.ValidateKey(it.K), storage.ValidateValue(it.V)); err != nil {
			return fmt.Errorf("%s: %s line %d: %v", a.path, StorageName, line, err)
		}
		if keys > 0 && (it.N < lastNS || it.N == lastNS && bytes.Compare(it.K, lastKey) <= 0) {
			return fmt.Errorf("%s: %s line %d is out of order", a.path, StorageName, line)
		}
		if keys == 0 || it.N != lastNS {
			namespaces++
		}
		keys++
		lastNS, lastKey = it.N, it.K
		if fn != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(it.N, it.K, it.V); err != nil {
				return err
			}
		}
	}
	st := a.Manifest.Storage
	switch {
	case cw.n != st.Bytes:
		return fmt.Errorf("%s: %s has %d bytes, its manifest says %d", a.path, StorageName, cw.n, st.Bytes)
	case hex.EncodeToString(h.Sum(nil)) != st.SHA256:
		return fmt.Errorf("%s: %s does not match its SHA-256 in the manifest: it was changed or damaged", a.path, StorageName)
	case keys != st.Keys || namespaces != st.Namespaces:
		return fmt.Errorf("%s: %s holds %d keys in %d namespaces, its manifest says %d in %d", a.path, StorageName, keys, namespaces, st.Keys, st.Namespaces)
	}
	return nil
}

// readLine reads one line without its newline, up to maxLine bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > maxLine {
			return nil, fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return out[:len(out)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(out) > 0:
			return nil, errors.New("the last line has no newline: the file is cut short")
		}
		return out, err
	}
}

// Items reads the storage copy again and calls fn with every item, in order; the archive
// is checked again as it is read (it may have changed since Open), so fn may have been
// called when Items fails.
func (a *Archive) Items(ctx context.Context, fn func(ns string, key, value []byte) error) error {
	return a.walk(func(tr *tar.Reader, hdr *tar.Header) error {
		if hdr.Name == StorageName {
			return a.readStorage(ctx, tr, fn)
		}
		return nil
	})
}
