//go:build !race

package childproc_test

const raceEnabled = false
