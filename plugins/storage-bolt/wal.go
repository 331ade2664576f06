package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The write-ahead log. A write is acknowledged once its record is in a log file and the
// file is synced: one small sequential write and one fdatasync, where a bbolt commit
// writes every page it dirtied (a dozen scattered pages for a trace) and syncs twice.
// Checkpoints copy the logged writes into the database file in large, durable bbolt
// transactions (see engine). Two log files take turns: while one receives writes, the
// other's writes are being checkpointed; once they are in the database file, it is
// reset to start over. The writes of both are replayed, older file first, when the
// database is opened.
//
// A file starts with a header block (magic, format version, epoch, salt, checksum).
// Epochs grow each time a file is reset, so the older of the two files is the one with
// the smaller epoch; the salt is a fresh random number at each reset (as in SQLite's
// WAL). Records follow the header back to back: payload length (uint32), CRC-32C of the
// payload (uint32), payload. A payload is the file's salt (uint64), an op count (uint32)
// and the ops: a flag byte (1 = delete), the namespace (uint16 length), the key and the
// value (uint32 lengths). Reading stops at the first record that is short, fails its
// checksum or carries another salt: a record torn by a crash was never acknowledged, and
// what follows the last record is left over from an earlier use of the file, already in
// the database file. The salt makes those left-overs unreadable as records of the
// current use, even where a stored value was crafted to look like one: it cannot be
// guessed.
//
// Records are appended one at a time, each synced before the next is written, so an
// intact record of the current use after the point where reading stopped means the
// record there was once whole and acknowledged, and was damaged since (a flipped bit, a
// bad sector): the log is then refused (walDamageError), never replayed short and reset,
// which would drop those acknowledged writes and then overwrite them.
//
// The file is kept filled with zeros ahead of the records (allocated in growing steps),
// so appending a record overwrites allocated blocks and its fdatasync has no file size
// or block allocation to journal.

const (
	walHeaderSize = 4096
	walMagic      = "LIMITWAL"
	walVersion    = 1
	// walRecordHead is a record's length and checksum.
	walRecordHead = 8
	// walMinGrow is the first step the file is filled ahead by; steps double up to
	// walMaxGrow. The first is small so a database on a small disk starts.
	walMinGrow = 64 << 10
	walMaxGrow = 4 << 20
	// walKeepBytes: when a file reset after a checkpoint has grown beyond it (a burst of
	// large values), it is cut back.
	walKeepBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// walOp is one logged write.
type walOp struct {
	ns  string
	key []byte
	val []byte
	del bool
}

// walFile is one of the two log files.
type walFile struct {
	f     *os.File
	path  string
	epoch uint64 // of its header; 0 when it has none yet
	salt  uint64 // of its header, which every record carries
	off   int64  // where the next record goes
	size  int64  // the file's size: zeros from off up to it
	grow  int64  // the next fill step
	sync  bool   // fdatasync after each append and reset (false only with no_sync)
}

// openWAL opens or creates a log file. A new file's directory entry is synced, so the
// file outlives a crash once records are in it.
func openWAL(path string, sync bool) (*walFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil && sync {
			err = syncDir(filepath.Dir(path))
		}
	}
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		return nil, fmt.Errorf("open write-ahead log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open write-ahead log: %w", err)
	}
	return &walFile{f: f, path: path, size: fi.Size(), grow: walMinGrow, sync: sync}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// read returns the file's epoch and the ops of its valid records, in order. A file
// without a valid header has epoch 0 and no records. torn is the offset of a record of
// this use of the file that follows the valid ones but is cut short or fails its
// checksum (a crash in the middle of its write), or -1: the caller says it dropped it.
// When an intact record of this use follows the point where reading stopped, the file
// is damaged, not torn: err is a *walDamageError, with the epoch and the records before
// the damage.
func (w *walFile) read() (epoch uint64, recs [][]walOp, torn int64, err error) {
	data, err := io.ReadAll(io.NewSectionReader(w.f, 0, w.size))
	if err != nil {
		return 0, nil, -1, fmt.Errorf("read write-ahead log %s: %w", w.path, err)
	}
	epoch, salt, ok := decodeHeader(data)
	if !ok {
		if d := headerDamage(w.path, data); d != nil {
			return d.epoch, nil, -1, d
		}
		return 0, nil, -1, nil
	}
	off := walHeaderSize
	torn = -1
	for {
		if off+walRecordHead > len(data) {
			if tornAt(data[off:], salt) {
				torn = int64(off)
			}
			break
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 {
			break // the zeros ahead of the records
		}
		if n > len(data)-off-walRecordHead || crc32.Checksum(data[off+walRecordHead:off+walRecordHead+n], crcTable) != sum {
			if tornAt(data[off:], salt) {
				torn = int64(off)
			}
			break
		}
		payload := data[off+walRecordHead : off+walRecordHead+n]
		if len(payload) < 8 || binary.LittleEndian.Uint64(payload) != salt {
			break // not a record of this use of the file
		}
		ops, _, err := decodeRecord(payload)
		if err != nil {
			// Checksum and salt match, so this is not a torn write or a left-over but a
			// record this code cannot read: stop rather than lose writes silently.
			return 0, nil, -1, fmt.Errorf("write-ahead log %s at offset %d: %w", w.path, off, err)
		}
		recs = append(recs, ops)
		off += walRecordHead + n
	}
	if next, intact := intactAfter(data, off, salt); intact > 0 {
		return epoch, recs, -1, &walDamageError{path: w.path, off: int64(off), next: next, intact: intact, before: len(recs)}
	}
	return epoch, recs, torn, nil
}

// intactAfter looks for records of this use of the file (carrying salt, with a valid
// checksum) that start after off, where reading stopped, and returns the offset of the
// first and how many follow each other from there. A record's length may be what was
// damaged, so every offset is a candidate, found by searching for the salt, which each
// record's payload starts with; the checksum then rules out chance matches. Nothing of
// this use is ever written after a record that did not reach the disk whole, so neither
// a torn tail nor the left-overs of an earlier use yield one.
func intactAfter(data []byte, off int, salt uint64) (next int64, intact int) {
	var sb [8]byte
	binary.LittleEndian.PutUint64(sb[:], salt)
	for from := off + walRecordHead + 1; from < len(data); {
		i := bytes.Index(data[from:], sb[:])
		if i < 0 {
			return -1, 0
		}
		start := from + i - walRecordHead
		if n := validRecord(data, start, salt); n > 0 {
			for p := start; ; {
				intact++
				p += walRecordHead + n
				if n = validRecord(data, p, salt); n == 0 {
					return int64(start), intact
				}
			}
		}
		from += i + 1
	}
	return -1, 0
}

// headerDamage tells a damaged header from a missing one: a file whose header does not
// decode but whose first record is intact and carries the salt the header's own field
// holds had a valid header when that record was written (a record is written only after
// its file's header), so the header was damaged since (a bad sector), and the records
// after it are acknowledged writes. A new file (zeros) or one cut short has no such
// record; a reset rewrites the header in one sector, which is written whole or not at
// all. It returns nil when the file is not such a one.
func headerDamage(path string, data []byte) *walDamageError {
	if len(data) < walHeaderSize+walRecordHead {
		return nil
	}
	salt := binary.LittleEndian.Uint64(data[20:])
	if salt == 0 {
		return nil
	}
	intact := 0
	for p := walHeaderSize; ; {
		n := validRecord(data, p, salt)
		if n == 0 {
			break
		}
		intact++
		p += walRecordHead + n
	}
	if intact == 0 {
		return nil
	}
	// The epoch field, unverified, is the best guess of which file is the older.
	return &walDamageError{path: path, header: true, next: walHeaderSize, intact: intact,
		epoch: binary.LittleEndian.Uint64(data[12:])}
}

// validRecord returns the payload length of the record at off if it is one of this use
// of the file (its checksum holds and its payload starts with salt), else 0.
func validRecord(data []byte, off int, salt uint64) int {
	if off+walRecordHead > len(data) {
		return 0
	}
	n := int(binary.LittleEndian.Uint32(data[off:]))
	if n < 12 || n > len(data)-off-walRecordHead {
		return 0
	}
	payload := data[off+walRecordHead : off+walRecordHead+n]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(data[off+4:]) ||
		binary.LittleEndian.Uint64(payload) != salt {
		return 0
	}
	return n
}

// walDamageError says a log file holds an unreadable record followed by intact ones:
// damage to acknowledged writes, not a write torn by a crash. The file is left as it is.
type walDamageError struct {
	path   string
	off    int64 // of the unreadable record, where reading stopped
	next   int64 // of the first intact record after it
	intact int   // intact records from next on
	before int   // records before off, which read
	// newer is the other log file when it is newer and holds records: they were logged
	// after the damaged ones (set by the engine).
	newer string
	// header is set when what is damaged is the file's header (off 0), epoch then being
	// its epoch field as it reads.
	header bool
	epoch  uint64
}

func (e *walDamageError) Error() string {
	if e.header {
		return fmt.Sprintf("write-ahead log %s is damaged: its header is unreadable, yet %d intact records of it follow from offset %d, so it is not a file never written or reset by a crash but damage to a log of acknowledged writes",
			e.path, e.intact, e.next)
	}
	return fmt.Sprintf("write-ahead log %s is damaged at offset %d: the record there is unreadable, yet %d intact records follow it from offset %d, so it is not a write cut short by a crash but damage to acknowledged writes",
		e.path, e.off, e.intact, e.next)
}

// advice says what the operator can do; nothing was changed.
func (e *walDamageError) advice() string {
	cut := fmt.Sprintf("truncate -s %d %s", e.off, e.path)
	if e.newer != "" {
		cut += fmt.Sprintf(", and empty the newer log, whose writes were logged after those: truncate -s %d %s", walHeaderSize, e.newer)
	}
	what := fmt.Sprintf("Replaying only the %d records before it would silently drop the writes of the damaged record and of the %d after it", e.before, e.intact)
	lost := "the damaged record and every write logged after it"
	if e.header {
		what = fmt.Sprintf("Taking the file for one without a log would silently drop the writes of its %d records", e.intact)
		lost = "every write of this log and of any logged after it"
	}
	return fmt.Sprintf("%s, so the database is not opened, and nothing was changed. "+
		"Check the disk (a failing device, a bad copy), then either restore the database file and its -wal files from a backup, "+
		"or accept losing %s: keep a copy of the log to inspect (cp %s %s.damaged), cut the log at the damage (%s), and start again.",
		what, lost, e.path, e.path, cut)
}

// tornAt reports whether rest, which holds no valid record at its start, begins with a
// record of this use of the file cut short: its payload starts with the file's salt (a
// left-over of an earlier use carries another), or the file ends before the salt, which
// only a cut file does (it is filled with zeros ahead of the records).
func tornAt(rest []byte, salt uint64) bool {
	if len(rest) >= walRecordHead+8 {
		return binary.LittleEndian.Uint64(rest[walRecordHead:]) == salt
	}
	for _, b := range rest {
		if b != 0 {
			return true
		}
	}
	return false
}

// reset makes the file empty under a new epoch and salt: it rewrites the header (the
// records after it, of the old salt, no longer count) and syncs it.
func (w *walFile) reset(epoch uint64) error {
	var sb [8]byte
	if _, err := rand.Read(sb[:]); err != nil {
		return fmt.Errorf("reset write-ahead log %s: %w", w.path, err)
	}
	salt := binary.LittleEndian.Uint64(sb[:])
	if w.size > walKeepBytes {
		if err := w.f.Truncate(walHeaderSize); err != nil {
			return fmt.Errorf("reset write-ahead log %s: %w", w.path, err)
		}
		w.size = walHeaderSize
		w.grow = walMinGrow
	}
	hdr := make([]byte, walHeaderSize)
	copy(hdr, walMagic)
	binary.LittleEndian.PutUint32(hdr[8:], walVersion)
	binary.LittleEndian.PutUint64(hdr[12:], epoch)
	binary.LittleEndian.PutUint64(hdr[20:], salt)
	binary.LittleEndian.PutUint32(hdr[28:], crc32.Checksum(hdr[:28], crcTable))
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("reset write-ahead log %s: %w", w.path, err)
	}
	w.size = max(w.size, walHeaderSize)
	if w.sync {
		if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
			return fmt.Errorf("sync write-ahead log %s: %w", w.path, err)
		}
	}
	w.epoch, w.salt, w.off = epoch, salt, walHeaderSize
	return nil
}

// decodeHeader returns a header's epoch and salt, or false when data has no valid header.
func decodeHeader(data []byte) (epoch, salt uint64, ok bool) {
	if len(data) < walHeaderSize || string(data[:8]) != walMagic ||
		binary.LittleEndian.Uint32(data[8:]) != walVersion ||
		crc32.Checksum(data[:28], crcTable) != binary.LittleEndian.Uint32(data[28:]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(data[12:]), binary.LittleEndian.Uint64(data[20:]), true
}

// append writes one record holding ops and syncs the file. On error nothing is
// acknowledged; the record's place is reused by the next append.
func (w *walFile) append(rec []byte) error {
	end := w.off + int64(len(rec))
	if end > w.size {
		if err := w.fill(end); err != nil {
			return err
		}
	}
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		// Best effort: clear a partly written head, so reading stops here.
		_ = w.zero(w.off, min(w.off+walRecordHead, w.size))
		return fmt.Errorf("write-ahead log %s: %w", w.path, err)
	}
	if w.sync {
		if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
			return &syncError{fmt.Errorf("sync write-ahead log %s: %w", w.path, err)}
		}
	}
	w.off = end
	return nil
}

// syncError marks a failed fdatasync: what reached the disk is unknown (the kernel may
// have dropped the dirty pages), so the log cannot be appended to any more.
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// fill extends the zero-filled part of the file to at least end, in growing steps; when
// a step does not fit on the disk, by just what end needs.
func (w *walFile) fill(end int64) error {
	target := max(end, w.size+w.grow)
	err := w.zero(w.size, target)
	if err != nil && target > end {
		_ = w.f.Truncate(w.size)
		target = end
		err = w.zero(w.size, target)
	}
	if err != nil {
		// Give back what was allocated: the disk is likely full.
		_ = w.f.Truncate(w.size)
		return fmt.Errorf("grow write-ahead log %s: %w", w.path, err)
	}
	w.size = target
	w.grow = min(w.grow*2, walMaxGrow)
	return nil
}

var zeros = make([]byte, 64<<10)

// zero writes zeros over [from, to).
func (w *walFile) zero(from, to int64) error {
	for off := from; off < to; {
		n := min(int64(len(zeros)), to-off)
		if _, err := w.f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func (w *walFile) close() error { return w.f.Close() }

// encodeRecord returns a record (head and payload) holding ops, for a file with salt, and
// points each op's key and value at its copy in the record: the memtable keeps those, so
// the caller's buffers are free once the write returns.
func encodeRecord(salt uint64, ops []walOp) []byte {
	n := 12
	for _, op := range ops {
		n += 1 + 2 + len(op.ns) + 4 + len(op.key) + 4 + len(op.val)
	}
	buf := make([]byte, walRecordHead+n)
	p := buf[walRecordHead:]
	binary.LittleEndian.PutUint64(p, salt)
	binary.LittleEndian.PutUint32(p[8:], uint32(len(ops)))
	i := 12
	for j, op := range ops {
		if op.del {
			p[i] = 1
		}
		i++
		binary.LittleEndian.PutUint16(p[i:], uint16(len(op.ns)))
		i += 2 + copy(p[i+2:], op.ns)
		binary.LittleEndian.PutUint32(p[i:], uint32(len(op.key)))
		i += 4
		ops[j].key = p[i : i+len(op.key) : i+len(op.key)]
		i += copy(p[i:], op.key)
		binary.LittleEndian.PutUint32(p[i:], uint32(len(op.val)))
		i += 4
		ops[j].val = p[i : i+len(op.val) : i+len(op.val)]
		i += copy(p[i:], op.val)
	}
	binary.LittleEndian.PutUint32(buf, uint32(n))
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(p, crcTable))
	return buf
}

var errBadRecord = errors.New("malformed write-ahead log record")

// decodeRecord reads a payload and returns its ops and salt. The ops' keys and values
// point into p.
func decodeRecord(p []byte) ([]walOp, uint64, error) {
	if len(p) < 12 {
		return nil, 0, errBadRecord
	}
	salt := binary.LittleEndian.Uint64(p)
	count := int(binary.LittleEndian.Uint32(p[8:]))
	if count > len(p) {
		return nil, 0, errBadRecord
	}
	ops := make([]walOp, 0, count)
	i := 12
	field := func(lenBytes int) ([]byte, bool) {
		if i+lenBytes > len(p) {
			return nil, false
		}
		var n int
		if lenBytes == 2 {
			n = int(binary.LittleEndian.Uint16(p[i:]))
		} else {
			n = int(binary.LittleEndian.Uint32(p[i:]))
		}
		i += lenBytes
		if n > len(p)-i {
			return nil, false
		}
		b := p[i : i+n : i+n]
		i += n
		return b, true
	}
	for range count {
		if i >= len(p) || p[i] > 1 {
			return nil, 0, errBadRecord
		}
		op := walOp{del: p[i] == 1}
		i++
		ns, ok1 := field(2)
		key, ok2 := field(4)
		val, ok3 := field(4)
		if !ok1 || !ok2 || !ok3 {
			return nil, 0, errBadRecord
		}
		op.ns, op.key, op.val = string(ns), key, val
		ops = append(ops, op)
	}
	if i != len(p) {
		return nil, 0, errBadRecord
	}
	return ops, salt, nil
}
