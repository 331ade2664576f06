package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// probeDir is the folder of the data_dir in which the health probe's throwaway sandbox
// gets its work dir, so that one a killed runner process left is found again and removed
// (in $TMPDIR nothing would).
const probeDir = "python-probe"

// probeGlob matches the probe work dirs in probeDir.
const probeGlob = "probe-*"

// probeSweepAge is how old an unlocked probe dir must be for sweepProbes to take it: a
// dir is locked a moment after it is made, and the age keeps a sweep off a dir made
// between the two.
const probeSweepAge = time.Minute

// makeProbeDir makes a work dir for the health probe under dataDir's probeDir (under
// $TMPDIR when the host gave no data_dir), locked (flock on the dir) until unlock is
// called, so that sweepProbes in another process leaves it alone while it is in use.
func makeProbeDir(dataDir string) (dir string, unlock func(), err error) {
	parent := ""
	if dataDir != "" {
		parent = filepath.Join(dataDir, probeDir)
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return "", nil, err
		}
	}
	dir, err = os.MkdirTemp(parent, probeGlob)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(dir)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return dir, func() { f.Close() }, nil
}

// sweepProbes removes the probe work dirs that runner processes killed during a health
// probe left in dataDir's probeDir (a live probe holds its dir's lock), and returns how
// many.
func sweepProbes(dataDir string) int {
	if dataDir == "" {
		return 0
	}
	return sweepUnlocked(filepath.Join(dataDir, probeDir, probeGlob), probeSweepAge, os.RemoveAll)
}
