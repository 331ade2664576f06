package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/sdk/storage"
)

// registerBackup registers GET /v1/backup when the daemon makes backups.
func (s *Server) registerBackup() {
	if s.opts.Backup == nil {
		return
	}
	s.handle(route{Method: "GET", Path: "/backup",
		Summary: "An online backup: the storage's every key as of one point in time, with the host's provenance key, node id and journal of pending outcomes, as a gzip-compressed tar archive that `limitd -restore` reads (operators only; it holds the host's private key)",
		Tag:     "host", Binary: "application/gzip", Errors: []int{409, 501, 503, 507}, Operator: true}, s.backup)
}

// backupStall is how long a backup's download may take nothing before the client counts
// as gone (the archive may take longer than api.write_timeout to send as a whole).
var backupStall = time.Minute

// backup makes the backup (the storage copied to a file under data_dir first, so the
// backend's view is held no longer than it takes to read), then sends it.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// Its headers would cost the whole backup: a probe or a link checker is not to
		// make one.
		w.Header().Set("Allow", "GET")
		writeProblem(w, r, http.StatusMethodNotAllowed, "HEAD of /v1/backup would make a whole backup: use GET", nil)
		return
	}
	if !s.backingUp.CompareAndSwap(false, true) {
		s.metrics.backups.WithLabelValues("refused").Inc()
		w.Header().Set("Retry-After", "10")
		writeProblem(w, r, http.StatusConflict, "a backup is being made: ask again once it is done", nil)
		return
	}
	defer s.backingUp.Store(false)
	// A shutdown ends the backup rather than wait for it.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.stopping, cancel)
	defer stop()
	start := time.Now()
	b, err := s.opts.Backup(ctx)
	if err != nil {
		s.metrics.backups.WithLabelValues("failed").Inc()
	}
	switch {
	case errors.Is(err, storage.ErrNoSnapshot):
		writeProblem(w, r, http.StatusNotImplemented, "the storage plugin offers no point-in-time snapshot (the Snapshot call), so no online backup can be made: stop limitd and copy data_dir and the storage (README, Backups)", nil)
		return
	case errors.Is(err, backup.ErrNoRoom):
		s.opts.Logger.Warn("backup given up: data_dir's disk would go below host.min_free_disk", append(requestIDs(w.Header().Get(requestIDHeader), r), "error", err)...)
		writeProblem(w, r, http.StatusInsufficientStorage, "data_dir's disk has no room for the backup's copy of the storage above host.min_free_disk (executions would be refused): free space, or back up with limitd stopped", nil)
		return
	case errors.Is(err, syscall.ENOSPC):
		s.opts.Logger.Warn("backup refused: data_dir is out of space", append(requestIDs(w.Header().Get(requestIDHeader), r), "error", err)...)
		writeProblem(w, r, http.StatusInsufficientStorage, "data_dir has no room for the backup's copy of the storage: free space, or back up with limitd stopped", nil)
		return
	case err != nil && s.stopping.Err() != nil:
		writeProblem(w, r, http.StatusServiceUnavailable, "limitd is shutting down: the backup was not finished", nil)
		return
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) {
			// A file of data_dir that could not be read: the path is for the log.
			s.opts.Logger.Error("backup failed", append(requestIDs(w.Header().Get(requestIDHeader), r), "error", err)...)
			writeProblem(w, r, http.StatusInternalServerError, "the backup could not read data_dir (the cause is in the daemon's log)", nil)
			return
		}
		s.fail(w, r, err)
		return
	}
	defer b.Close()
	m := b.Manifest()
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="limit-backup-%s-%s.tar.gz"`, m.Node, m.Made.Format("20060102T150405Z")))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Limit-Backup-Keys", fmt.Sprint(m.Storage.Keys))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	n, err := b.WriteTo(writerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		writeWithin(rc, backupStall)
		return w.Write(p)
	}))
	logArgs := append(requestIDs(w.Header().Get(requestIDHeader), r), "keys", m.Storage.Keys, "namespaces", m.Storage.Namespaces,
		"files", len(m.Files), "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
	if err != nil {
		// The answer has begun: the client sees a cut archive, which a restore refuses.
		s.opts.Logger.Warn("backup not sent whole", append(logArgs, "error", err)...)
		s.metrics.backups.WithLabelValues("not_sent").Inc()
		panic(http.ErrAbortHandler)
	}
	s.opts.Logger.Info("backup made", logArgs...)
	s.metrics.backups.WithLabelValues("sent").Inc()
	s.metrics.backupLast.SetToCurrentTime()
}

// writerFunc is an io.Writer made of a function.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
