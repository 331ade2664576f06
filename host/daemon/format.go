package daemon

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
)

// StorageFormat is the format of the data this limitd writes to storage. It goes up when a
// version writes data an older one would misread (a field its strict decoders refuse, a
// record it does not know): the older one then refuses to start instead of answering 500s
// and calling good provenance tampered.
//
//	1  data written before the marker existed (no formatKey in storage)
//	2  optional members in provenance entries (set_by of flags, by of merges)
const StorageFormat = 2

// formatKey is the record, in the default tenant's index namespace, of the highest format
// any limitd has written to this storage: a decimal integer. Data without it is format 1.
const formatKey = "meta/format"

// FormatError is the refusal to start on a storage a newer limitd wrote.
type FormatError struct {
	// Stored is the format recorded in storage; Supported the highest this limitd reads.
	Stored, Supported int
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("storage was written by a newer limitd (format %d); this limitd reads formats up to %d: upgrade limitd, or restore the storage from a backup made before the newer limitd ran", e.Stored, e.Supported)
}

// claimFormat checks, at a start before anything is written, that this limitd can read the
// storage, and records StorageFormat in it when it held a lower one (hosts that share the
// storage may race: the highest format wins). It returns the format the storage held (1
// when it had data but no record; 0 when it held nothing, a new storage), or a
// *FormatError when a newer limitd wrote it.
func claimFormat(ctx context.Context, st storage.Storage) (int, error) {
	ns := trace.IndexNamespace(trace.DefaultTenant)
	key := []byte(formatKey)
	cur, present, err := st.Get(ctx, ns, key)
	if err != nil {
		return 0, fmt.Errorf("read the storage format: %w", err)
	}
	was := -1
	if !present {
		// Every session and trace has its record in the index namespace: none there is a
		// new storage, not format 1 data.
		page, err := st.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: 1, KeysOnly: true})
		if err != nil {
			return 0, fmt.Errorf("read the storage format: %w", err)
		}
		if len(page.Items) == 0 {
			was = 0
		}
	}
	for {
		stored := 1
		if present {
			n, err := strconv.Atoi(string(cur))
			if err != nil || n < 1 {
				return 0, fmt.Errorf("storage format record %s holds %q, not a format number: it was changed by hand or damaged; restore the storage from a backup", formatKey, cur)
			}
			stored = n
		}
		if was < 0 {
			was = stored
		}
		if stored > StorageFormat {
			return was, &FormatError{Stored: stored, Supported: StorageFormat}
		}
		if stored == StorageFormat {
			return was, nil
		}
		// Migrations from format stored to StorageFormat go here, before the record says
		// the data is in the new format. None is needed up to format 2.
		want := []byte(strconv.Itoa(StorageFormat))
		res, err := st.CompareAndSwap(ctx, storage.CASRequest{Namespace: ns, Key: key, ExpectPresent: present, Expected: cur, Value: want})
		if err != nil {
			return was, fmt.Errorf("record the storage format: %w", err)
		}
		if res.Swapped || bytes.Equal(res.Current, want) {
			return was, nil
		}
		// Another host wrote a record meanwhile: check that one.
		cur, present = res.Current, res.Present
	}
}

// BackupFiles are the files of data_dir an online backup holds beside the storage and the
// journal of pending outcomes: the host's provenance key and its node id.
var BackupFiles = []string{trace.KeyFile, nodeFile}
