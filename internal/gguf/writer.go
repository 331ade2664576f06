// Package gguf writes GGUF v3 files (the model format of llama.cpp) and generates small
// random-weight models with it, so tests and benchmarks get a real model to load without
// downloading one. It writes what llama.cpp reads: little-endian, metadata key/values,
// tensor infos, then 32-byte aligned tensor data.
//
// The format is described at https://github.com/ggml-org/ggml/blob/master/docs/gguf.md.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Version is the GGUF version this package writes.
const Version = 3

// Magic is "GGUF" read as a little-endian uint32.
const Magic = 0x46554747

// Alignment is the alignment of tensor data (the GGUF default, general.alignment).
const Alignment = 32

// ValueType is the type of a metadata value.
type ValueType uint32

// Metadata value types, numbered as in the specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// TensorType is a ggml tensor element type. Only F32 is written by this package.
type TensorType uint32

// TensorF32 is ggml's GGML_TYPE_F32.
const TensorF32 TensorType = 0

// kv is one metadata key/value pair, kept in insertion order.
type kv struct {
	key string
	typ ValueType
	// val is one of: uint8 … float64, bool, string, or array.
	val any
}

// array is a typed metadata array.
type array struct {
	elem ValueType
	vals any // []string, []float32, []int32, []uint32
	n    int
}

// tensor is one tensor's info and data.
type tensor struct {
	name string
	dims []uint64
	data []float32
}

// Writer collects metadata and tensors and writes them as one GGUF v3 file.
// The zero value is ready to use. Keys and tensor names must be unique.
type Writer struct {
	kvs     []kv
	keys    map[string]bool
	tensors []tensor
	names   map[string]bool
	err     error
}

func (w *Writer) add(key string, typ ValueType, val any) {
	if w.err != nil {
		return
	}
	if w.keys == nil {
		w.keys = map[string]bool{}
	}
	if key == "" {
		w.err = errors.New("gguf: empty metadata key")
		return
	}
	if w.keys[key] {
		w.err = fmt.Errorf("gguf: metadata key %q set twice", key)
		return
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, kv{key: key, typ: typ, val: val})
}

// SetString sets a string metadata value.
func (w *Writer) SetString(key, v string) { w.add(key, TypeString, v) }

// SetUint32 sets a uint32 metadata value.
func (w *Writer) SetUint32(key string, v uint32) { w.add(key, TypeUint32, v) }

// SetInt32 sets an int32 metadata value.
func (w *Writer) SetInt32(key string, v int32) { w.add(key, TypeInt32, v) }

// SetUint64 sets a uint64 metadata value.
func (w *Writer) SetUint64(key string, v uint64) { w.add(key, TypeUint64, v) }

// SetFloat32 sets a float32 metadata value.
func (w *Writer) SetFloat32(key string, v float32) { w.add(key, TypeFloat32, v) }

// SetBool sets a bool metadata value.
func (w *Writer) SetBool(key string, v bool) { w.add(key, TypeBool, v) }

// SetStrings sets an array of strings.
func (w *Writer) SetStrings(key string, v []string) {
	w.add(key, TypeArray, array{elem: TypeString, vals: v, n: len(v)})
}

// SetFloat32s sets an array of float32.
func (w *Writer) SetFloat32s(key string, v []float32) {
	w.add(key, TypeArray, array{elem: TypeFloat32, vals: v, n: len(v)})
}

// SetInt32s sets an array of int32.
func (w *Writer) SetInt32s(key string, v []int32) {
	w.add(key, TypeArray, array{elem: TypeInt32, vals: v, n: len(v)})
}

// AddTensor adds an F32 tensor. dims are in ggml order: dims[0] is the fastest-varying
// dimension (a row's length), so a matrix of n rows of k columns is {k, n}. len(data)
// must equal the product of dims.
func (w *Writer) AddTensor(name string, dims []uint64, data []float32) {
	if w.err != nil {
		return
	}
	if w.names == nil {
		w.names = map[string]bool{}
	}
	if name == "" || w.names[name] {
		w.err = fmt.Errorf("gguf: tensor name %q empty or used twice", name)
		return
	}
	if len(dims) == 0 || len(dims) > 4 {
		w.err = fmt.Errorf("gguf: tensor %q has %d dimensions, want 1 to 4", name, len(dims))
		return
	}
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	if n != uint64(len(data)) {
		w.err = fmt.Errorf("gguf: tensor %q has dims %v (%d elements) but %d values", name, dims, n, len(data))
		return
	}
	w.names[name] = true
	w.tensors = append(w.tensors, tensor{name: name, dims: append([]uint64(nil), dims...), data: data})
}

// countingWriter tracks the offset for padding.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (c *countingWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *countingWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.buf[:4], v)
	c.write(c.buf[:4])
}

func (c *countingWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(c.buf[:8], v)
	c.write(c.buf[:8])
}

func (c *countingWriter) str(s string) {
	c.u64(uint64(len(s)))
	c.write([]byte(s))
}

func (c *countingWriter) pad() {
	if r := c.n % Alignment; r != 0 {
		c.write(make([]byte, Alignment-r))
	}
}

func (c *countingWriter) value(typ ValueType, v any) {
	switch typ {
	case TypeString:
		c.str(v.(string))
	case TypeUint32:
		c.u32(v.(uint32))
	case TypeInt32:
		c.u32(uint32(v.(int32)))
	case TypeUint64:
		c.u64(v.(uint64))
	case TypeFloat32:
		c.u32(math.Float32bits(v.(float32)))
	case TypeBool:
		if v.(bool) {
			c.write([]byte{1})
		} else {
			c.write([]byte{0})
		}
	case TypeArray:
		a := v.(array)
		c.u32(uint32(a.elem))
		c.u64(uint64(a.n))
		switch vals := a.vals.(type) {
		case []string:
			for _, s := range vals {
				c.str(s)
			}
		case []float32:
			for _, f := range vals {
				c.u32(math.Float32bits(f))
			}
		case []int32:
			for _, i := range vals {
				c.u32(uint32(i))
			}
		}
	}
}

// WriteTo writes the file: header, metadata, tensor infos, padding, tensor data.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	c := &countingWriter{w: out}
	c.u32(Magic)
	c.u32(Version)
	c.u64(uint64(len(w.tensors)))
	c.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		c.str(kv.key)
		c.u32(uint32(kv.typ))
		c.value(kv.typ, kv.val)
	}
	var offset uint64
	for _, t := range w.tensors {
		c.str(t.name)
		c.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			c.u64(d)
		}
		c.u32(uint32(TensorF32))
		c.u64(offset)
		offset += alignUp(uint64(len(t.data)) * 4)
	}
	c.pad()
	buf := make([]byte, 0, 64<<10)
	for _, t := range w.tensors {
		for _, f := range t.data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(f))
			if len(buf) == cap(buf) {
				c.write(buf)
				buf = buf[:0]
			}
		}
		c.write(buf)
		buf = buf[:0]
		c.pad()
	}
	return c.n, c.err
}

func alignUp(n uint64) uint64 {
	return (n + Alignment - 1) / Alignment * Alignment
}

// WriteFile writes the file at path atomically: into a temporary file in the same
// directory, synced, then renamed, so a reader never sees half a model. Missing parent
// directories are created.
func (w *Writer) WriteFile(path string) error {
	if w.err != nil {
		return w.err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gguf: create directory for %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".gguf-*")
	if err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.WriteTo(bw); err != nil {
		f.Close()
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("gguf: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("gguf: close %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("gguf: chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("gguf: rename to %s: %w", path, err)
	}
	return nil
}
