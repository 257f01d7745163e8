// Package testbin builds the test worker binary (internal/testworker) that
// the project's tests and benchmarks start as a child process.
//
// The binary is built once per process, without the race detector (so that
// workers run at full speed whatever the test binary's flags), into a
// temporary directory. A test package removes it by calling Cleanup from its
// TestMain:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testbin.Cleanup()
//		os.Exit(code)
//	}
package testbin

import (
	"os"
	"sync"
	"testing"

	"github.com/procpool/procpool/internal/gobuild"
)

// ImportPath is the package Build builds.
const ImportPath = "github.com/procpool/procpool/internal/testworker"

var (
	mu   sync.Mutex
	dir  string // the temporary directory holding the binary
	path string // the binary, once built
)

// Path returns the path of the test worker binary, building it on first
// use, and fails tb if the build fails.
func Path(tb testing.TB) string {
	tb.Helper()
	p, err := Build()
	if err != nil {
		tb.Fatalf("testbin: %v", err)
	}
	return p
}

// Build returns the path of the test worker binary, building it on first
// use. It is for callers without a testing.TB, such as benchmarks programs.
func Build() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if path != "" {
		return path, nil
	}
	d, err := os.MkdirTemp("", "procpool-testworker-")
	if err != nil {
		return "", err
	}
	out, err := gobuild.Build(d, "testworker", ImportPath)
	if err != nil {
		os.RemoveAll(d)
		return "", err
	}
	dir, path = d, out
	return path, nil
}

// Cleanup removes the binary built by Build, if any. A later Build builds it
// again.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir, path = "", ""
}
