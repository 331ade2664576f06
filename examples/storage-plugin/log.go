package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/limitgraph/limit/sdk/storage"
)

// The log is a sequence of records, one per acknowledged write (a put, a delete, a whole
// batch, a successful compare-and-swap):
//
//	record = length uint32 | crc uint32 | body        (little endian; crc32c of body)
//	body   = namespace | op count uvarint | op...
//	op     = kind byte | key | value (puts only)
//
// where namespace, key and value are each a uvarint length followed by the bytes. A write
// is acknowledged only after its record is written and fsynced, so after a crash every
// acknowledged write is in the log; a record cut short by the crash fails its length or
// checksum and is dropped when the log is replayed.
//
// Left out to keep the example short: the log is never compacted, so it grows with every
// write and a restart replays all of them.

// maxRecord bounds a record's body: the largest batch the protocol allows plus room for
// the framing of its operations. A larger length can only be garbage.
const maxRecord = storage.MaxBatchBytes + storage.MaxBatchOps*32 + storage.MaxNamespaceSize + 64

// castagnoli is the CRC-32C table, the checksum storage systems commonly use.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendLog is an open log file, locked against other processes.
type appendLog struct {
	path string
	f    *os.File
	size int64 // bytes of whole records; the next record starts here
	// failed is set when an append could not be undone: the file may then hold a
	// partial record followed by nothing, and appending more would hide later records
	// behind it, so every later write is refused.
	failed error
}

// openLog opens (creating if needed) and locks the log at path, and calls apply for each
// record in order. A torn record at the end is cut off; dropped tells how many bytes that was.
func openLog(path string, apply func(ns string, ops []storage.Op)) (l *appendLog, dropped int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("open log: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	// An exclusive lock: two processes appending to one log would interleave records.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, 0, fmt.Errorf("log %q is in use by another process (%v); stop it or use another path", path, err)
	}
	// The file may have just been created: sync its directory so the name survives a crash.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, 0, err
	}
	l = &appendLog{path: path, f: f}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		ns, ops, n, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fi, serr := f.Stat()
			if serr != nil {
				return nil, 0, fmt.Errorf("replay log %q: %w", path, serr)
			}
			torn, terr := isTornTail(f, l.size, fi.Size())
			if terr != nil {
				return nil, 0, fmt.Errorf("replay log %q: %w", path, terr)
			}
			if !torn {
				// Whole records follow the bad one: this is damage, not a crash in
				// the middle of an append. Cutting it off would lose acknowledged
				// writes, so refuse and let a human decide.
				return nil, 0, fmt.Errorf("log %q is damaged at byte %d (%v) and records follow; restore it from a backup", path, l.size, err)
			}
			// A crash in the middle of the last append: that write was never
			// acknowledged, so cutting it off loses nothing.
			dropped = fi.Size() - l.size
			if err := l.truncate(); err != nil {
				return nil, 0, fmt.Errorf("replay log %q: cut off the torn record at byte %d: %w", path, l.size, err)
			}
			break
		}
		apply(ns, ops)
		l.size += n
	}
	if _, err := f.Seek(l.size, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("replay log %q: %w", path, err)
	}
	return l, dropped, nil
}

// isTornTail tells whether the bytes of the log from start to size are what a crash in
// the middle of an append leaves: a record that runs to (or past) the end of the file, or
// zeros the file system filled in.
func isTornTail(f *os.File, start, size int64) (bool, error) {
	var head [8]byte
	if size-start < int64(len(head)) {
		return true, nil
	}
	if _, err := f.ReadAt(head[:], start); err != nil {
		return false, err
	}
	if length := binary.LittleEndian.Uint32(head[:4]); length <= maxRecord && start+int64(len(head))+int64(length) >= size {
		return true, nil
	}
	buf := make([]byte, 64<<10)
	for off := start; off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	return true, nil
}

// readRecord reads one record and returns its namespace, its ops and its size in bytes.
// It returns io.EOF at a clean end of the log, and another error for a torn or bad record.
func readRecord(r *bufio.Reader) (string, []storage.Op, int64, error) {
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return "", nil, 0, io.EOF
		}
		return "", nil, 0, fmt.Errorf("torn record header: %w", err)
	}
	length, sum := binary.LittleEndian.Uint32(head[:4]), binary.LittleEndian.Uint32(head[4:])
	if length > maxRecord {
		return "", nil, 0, fmt.Errorf("record length %d is beyond any valid record", length)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", nil, 0, fmt.Errorf("torn record body: %w", err)
	}
	if crc32.Checksum(body, castagnoli) != sum {
		return "", nil, 0, errors.New("record checksum mismatch")
	}
	ns, ops, err := decodeBody(body)
	if err != nil {
		return "", nil, 0, err
	}
	return ns, ops, int64(len(head)) + int64(length), nil
}

// append writes one record holding ops and syncs it to disk. If that fails, it cuts the
// file back to where the record started, so the log stays a sequence of whole records.
func (l *appendLog) append(ns string, ops []storage.Op) error {
	if l.failed != nil {
		return fmt.Errorf("log %q is unusable after an earlier failure (%v); restart the plugin: %w", l.path, l.failed, storage.ErrUnavailable)
	}
	body := encodeBody(ns, ops)
	rec := make([]byte, 8, 8+len(body))
	binary.LittleEndian.PutUint32(rec[:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(body, castagnoli))
	rec = append(rec, body...)
	_, err := l.f.Write(rec)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		if terr := l.truncate(); terr != nil {
			l.failed = err
		}
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("append to log %q: %v: %w", l.path, err, storage.ErrNoSpace)
		}
		return fmt.Errorf("append to log %q: %w", l.path, err)
	}
	l.size += int64(len(rec))
	return nil
}

// truncate cuts the file back to its whole records and syncs that.
func (l *appendLog) truncate() error {
	if err := l.f.Truncate(l.size); err != nil {
		return err
	}
	if _, err := l.f.Seek(l.size, io.SeekStart); err != nil {
		return err
	}
	return l.f.Sync()
}

// close closes the file, which releases its lock.
func (l *appendLog) close() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close log %q: %w", l.path, err)
	}
	return nil
}

// encodeBody encodes a record's body.
func encodeBody(ns string, ops []storage.Op) []byte {
	size := len(ns) + 2*binary.MaxVarintLen64
	for _, op := range ops {
		size += 1 + len(op.Key) + len(op.Value) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	b = appendBytes(b, []byte(ns))
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, op := range ops {
		b = append(b, byte(op.Kind))
		b = appendBytes(b, op.Key)
		if op.Kind == storage.OpPut {
			b = appendBytes(b, op.Value)
		}
	}
	return b
}

// appendBytes appends p with its length in front.
func appendBytes(b, p []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(p))), p...)
}

// decodeBody decodes a record's body. The checksum already matched, so an error here
// means a bug rather than a crash; it is still reported, never a panic.
func decodeBody(b []byte) (string, []storage.Op, error) {
	d := decoder{b: b}
	ns := string(d.bytes())
	count := d.uvarint()
	if d.err == nil && count > uint64(len(d.b)) { // every op takes at least one byte
		d.err = fmt.Errorf("record claims %d operations in %d bytes", count, len(d.b))
	}
	var ops []storage.Op
	for i := uint64(0); i < count && d.err == nil; i++ {
		op := storage.Op{Kind: storage.OpKind(d.byte())}
		op.Key = d.bytes()
		switch op.Kind {
		case storage.OpPut:
			op.Value = d.bytes()
		case storage.OpDelete:
		default:
			d.fail("unknown operation kind %d", op.Kind)
		}
		ops = append(ops, op)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the last operation", len(d.b))
	}
	if d.err != nil {
		return "", nil, fmt.Errorf("bad record: %w", d.err)
	}
	return ns, ops, nil
}

// decoder reads a body front to back and remembers the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("record ends early")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d runs past the record", n)
		return nil
	}
	p := make([]byte, n) // a copy: the store keeps it
	copy(p, d.b[:n])
	d.b = d.b[n:]
	return p
}

// syncDir fsyncs a directory, making the names in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %q: %w", dir, err)
	}
	return nil
}
