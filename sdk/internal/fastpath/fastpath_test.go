package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestReadFrameBounds(t *testing.T) {
	frame := FinishFrame(append(AppendResponseHeader(nil, 7, 3), "hello"...))
	got, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), ResponseHeader, 64)
	if err != nil || string(got[ResponseHeader:]) != "hello" || got[4] != 3 {
		t.Fatalf("ReadFrame: %q, %v", got, err)
	}
	for _, tc := range []struct {
		name        string
		least, most uint32
	}{{"too short", 20, 64}, {"too long", ResponseHeader, 5}} {
		if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), tc.least, tc.most); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame[:8])), ResponseHeader, 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut frame: %v, want unexpected EOF", err)
	}
}

// TestWriteWaitWaitsForTheReader checks that WriteWait holds a sender back while more than
// its limit waits behind a write the reader has not taken, and that every frame arrives
// once, in order.
func TestWriteWaitWaitsForTheReader(t *testing.T) {
	a, b := net.Pipe() // unbuffered: a write waits for the read
	defer a.Close()
	defer b.Close()
	w := NewFrameWriter(a)
	first, second, third := bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 100)
	go func() { _ = w.Write(first) }() // blocks in the pipe
	for {
		w.mu.Lock()
		busy := w.writing
		w.mu.Unlock()
		if busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Write(second); err != nil { // queued behind the first
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- w.WriteWait(context.Background(), third, 50) }()
	select {
	case err := <-sent:
		t.Fatalf("WriteWait returned (%v) while 100 bytes waited behind an unread write", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.WriteWait(ctx, third, 50); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteWait with a cancelled context: %v", err)
	}
	got := make([]byte, 300)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if want := append(append(append([]byte{}, first...), second...), third...); !bytes.Equal(got, want) {
		t.Fatal("frames arrived out of order or mixed")
	}
}
