package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// downStore is a storage whose writes fail as a backend that is down does, while down.
type downStore struct {
	storage.Storage
	down atomic.Bool
}

func (s *downStore) fail() error {
	if s.down.Load() {
		return storage.ErrUnavailable
	}
	return nil
}

func (s *downStore) Put(ctx context.Context, ns string, k, v []byte) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Storage.Put(ctx, ns, k, v)
}

func (s *downStore) Delete(ctx context.Context, ns string, k []byte) (bool, error) {
	if err := s.fail(); err != nil {
		return false, err
	}
	return s.Storage.Delete(ctx, ns, k)
}

func (s *downStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Storage.Batch(ctx, ns, ops)
}

func (s *downStore) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := s.fail(); err != nil {
		return storage.CASResult{}, err
	}
	return s.Storage.CompareAndSwap(ctx, req)
}

// TestExecuteRecordPendingOutputs: an execution that ran while the storage would not take
// its trace answers 503 with record_pending (do not run it again) and, as members of the
// problem, what its result would have carried: stdout, output, exit code. The trace keeps
// only their digests, and a non-streamed client used to get none of it. The stream's error
// event carries the same (its result event would have, beside the output events).
func TestExecuteRecordPendingOutputs(t *testing.T) {
	st := &downStore{Storage: memstore.New()}
	a := newPluginAPI(t, st)
	a.srv.opts.Engine.JournalDir = t.TempDir()
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "pending"}, http.StatusCreated, &sess)
	// Nothing is written before the run but the trace (the run is shorter than
	// execution.RecordStartAfter, or its early create fails and the outcome is written
	// with it): with the storage down from here, the code runs and its record fails.
	st.down.Store(true)

	for _, stream := range []bool{false, true} {
		body := strings.NewReader(`{"runner":"echo","input":"hello"}`)
		req, err := http.NewRequest("POST", srv.URL+"/v1/sessions/"+sess.ID+"/executions", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if stream {
			req.Header.Set("Accept", "text/event-stream")
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if stream {
			// The error event's data is the problem.
			sc := bufio.NewScanner(res.Body)
			sc.Buffer(nil, 1<<20)
			event := ""
			for sc.Scan() {
				line := sc.Text()
				if name, ok := strings.CutPrefix(line, "event: "); ok {
					event = name
				}
				if data, ok := strings.CutPrefix(line, "data: "); ok && event == "error" {
					if err := json.Unmarshal([]byte(data), &p); err != nil {
						t.Fatal(err)
					}
				}
			}
		} else {
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "" {
				t.Errorf("status %d, Retry-After %q; want 503 without Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
			}
			if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
		}
		res.Body.Close()
		stdout, _ := p["stdout"].(string)
		if p["record_pending"] != true || p["status"] != 503.0 || p["execution_status"] != "ok" || p["trace_id"] == "" ||
			!strings.Contains(stdout, "input=hello") || p["output"] != stdout || p["exit_code"] != 0.0 ||
			p["stderr"] != "" || p["duration_us"] == nil || p["flags"] == nil {
			t.Errorf("stream %v: problem %v; want record_pending with the execution's outputs", stream, p)
		}
	}
}
