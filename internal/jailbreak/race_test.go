//go:build race

package jailbreak

// raceEnabled says the tests run under the race detector, which makes the detector about
// fifteen times slower.
const raceEnabled = true
