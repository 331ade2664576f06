package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
)

// TestMergedWrites has many goroutines put and batch at once through one client, some of
// their writes failing in the plugin. Concurrent writes must be merged (fewer calls cross
// the boundary than were made), every write that succeeded must be there, and a failing
// write must fail alone, with its own error, whatever it was merged with.
func TestMergedWrites(t *testing.T) {
	for _, set := range []struct {
		name string
		c    launched
	}{{"fast path", launch(t, "faulty", storage.PluginSet())}, {"gRPC", launch(t, "faulty", storage.PluginSetGRPCOnly())}} {
		t.Run(set.name, func(t *testing.T) {
			c, ctx := set.c, t.Context()
			const writers, writes = 32, 60
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for g := range writers {
				wg.Go(func() {
					for i := range writes {
						key := fmt.Appendf(nil, "g%02d/k%03d", g, i)
						val := fmt.Appendf(nil, "value %d %d", g, i)
						var err error
						switch {
						case g == 0 && i%10 == 5:
							err = c.Put(ctx, "merge", []byte("nospace"), val)
							if !errors.Is(err, storage.ErrNoSpace) {
								errs <- fmt.Errorf("put of the faulty key: %v, want no space", err)
								return
							}
							continue
						case g == 1 && i%10 == 5:
							err = c.Put(ctx, "merge", []byte("internal"), val)
							if err == nil || !bytes.Contains([]byte(err.Error()), []byte("disk on fire")) {
								errs <- fmt.Errorf("put of the failing key: %v, want the backend's error", err)
								return
							}
							continue
						case g%2 == 1:
							err = c.Batch(ctx, "merge", []storage.Op{
								{Kind: storage.OpPut, Key: key, Value: val},
								{Kind: storage.OpPut, Key: append(key, "-twin"...), Value: val},
								{Kind: storage.OpDelete, Key: []byte("never-there")},
							})
						default:
							err = c.Put(ctx, "merge", key, val)
						}
						if err != nil {
							errs <- fmt.Errorf("write %s: %v", key, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			items := map[string]string{}
			var after []byte
			for {
				res, err := c.Scan(ctx, storage.ScanRequest{Namespace: "merge", StartAfter: after, Limit: 1000})
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range res.Items {
					items[string(it.Key)] = string(it.Value)
					after = it.Key
				}
				if !res.More {
					break
				}
			}
			want := 0
			for g := range writers {
				for i := range writes {
					if g < 2 && i%10 == 5 {
						continue
					}
					key, val := fmt.Sprintf("g%02d/k%03d", g, i), fmt.Sprintf("value %d %d", g, i)
					want++
					if items[key] != val {
						t.Fatalf("%s = %q, want %q", key, items[key], val)
					}
					if g%2 == 1 {
						want++
						if items[key+"-twin"] != val {
							t.Fatalf("%s-twin = %q, want %q", key, items[key+"-twin"], val)
						}
					}
				}
			}
			if len(items) != want {
				t.Fatalf("%d keys stored, want %d", len(items), want)
			}
			calls, batches := c.MergeStats()
			t.Logf("%d of %d writes went in %d merged batches", calls, writers*writes, batches)
			if batches == 0 || calls <= batches {
				t.Fatalf("%d writes in %d merged batches: concurrent writes were not merged", calls, batches)
			}
		})
	}
}
