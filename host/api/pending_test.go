package api

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/internal/downstore"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestExecuteRecordPendingOutputs: an execution that ran while the storage would not take
// its trace answers 503 with record_pending (do not run it again) and, as members of the
// problem, what its result would have carried: stdout, output, exit code. The trace keeps
// only their digests, and a non-streamed client used to get none of it. The stream's error
// event carries the same (its result event would have, beside the output events).
func TestExecuteRecordPendingOutputs(t *testing.T) {
	st := &downstore.Store{Storage: memstore.New()}
	a := newPluginAPI(t, st)
	a.srv.opts.Engine.JournalDir = t.TempDir()
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	var sess session.Session
	call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "pending"}, http.StatusCreated, &sess)
	// Nothing is written before the run but the trace (the run is shorter than
	// execution.RecordStartAfter, or its early create fails and the outcome is written
	// with it): with the storage down from here, the code runs and its record fails.
	st.Down.Store(true)

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
