//go:build race

package childproc_test

// raceEnabled: a -race binary maps terabytes of shadow memory and cannot
// run under an RLIMIT_AS, so tests that start the test binary skip it.
const raceEnabled = true
