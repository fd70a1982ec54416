//go:build race

package codec_test

// raceEnabled: sync.Pool drops items at random under the race detector, so
// pool-reuse allocation checks are skipped.
const raceEnabled = true
