package api

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
//
// When the outcome cannot be kept in the journal either (lost: the storage out of space,
// and a file where the journal's directory should be), the answer is a 500 with
// record_lost and the same members, without Retry-After: it used to be the storage's bare
// 507, with no trace id and no outputs, which invites running the code again.
func TestExecuteRecordPendingOutputs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lost   bool
		status int
		member string
	}{
		{"pending", false, http.StatusServiceUnavailable, "record_pending"},
		{"lost", true, http.StatusInternalServerError, "record_lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &downstore.Store{Storage: memstore.New()}
			a := newPluginAPI(t, st)
			a.srv.opts.Engine.JournalDir = t.TempDir()
			if tc.lost {
				// A file in place of the journal's directory: nothing can be kept there.
				a.srv.opts.Engine.JournalDir = filepath.Join(t.TempDir(), "pending-outcomes")
				if err := os.WriteFile(a.srv.opts.Engine.JournalDir, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			srv := httptest.NewServer(a.srv)
			t.Cleanup(srv.Close)
			var sess session.Session
			call(t, srv, "POST", "/v1/sessions", map[string]any{"name": "pending"}, http.StatusCreated, &sess)
			// Nothing is written before the run but the trace (the run is shorter than
			// execution.RecordStartAfter, or its early create fails and the outcome is
			// written with it): with the storage refusing writes from here, the code runs
			// and its record fails.
			if tc.lost {
				st.Full.Store(true)
			} else {
				st.Down.Store(true)
			}

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
					if res.StatusCode != tc.status || res.Header.Get("Retry-After") != "" {
						t.Errorf("status %d, Retry-After %q; want %d without Retry-After", res.StatusCode, res.Header.Get("Retry-After"), tc.status)
					}
					if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
						t.Fatal(err)
					}
				}
				res.Body.Close()
				stdout, _ := p["stdout"].(string)
				detail, _ := p["detail"].(string)
				if p[tc.member] != true || p["status"] != float64(tc.status) || p["execution_status"] != "ok" || p["trace_id"] == "" ||
					!strings.Contains(stdout, "input=hello") || p["output"] != stdout || p["exit_code"] != 0.0 ||
					p["stderr"] != "" || p["duration_us"] == nil || p["flags"] == nil || p["retry_after"] != nil ||
					!strings.Contains(detail, "do not run it again") {
					t.Errorf("stream %v: problem %v; want %s with the execution's outputs", stream, p, tc.member)
				}
				if strings.Contains(detail, "/data/limit.db") || tc.lost && !strings.Contains(detail, "its record is lost") {
					t.Errorf("stream %v: detail %q; want it to say the record is lost, without the backend's words", stream, detail)
				}
			}
		})
	}
}
