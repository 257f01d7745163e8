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
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
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
	out := filepath.Join(d, "testworker")
	cmd := exec.Command(goTool(), "build", "-o", out, ImportPath)
	cmd.Dir = moduleRoot()
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(d)
		return "", fmt.Errorf("go build %s: %v\n%s", ImportPath, err, stderr.Bytes())
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

// goTool returns the go command of the toolchain that built this binary if
// it is still there, and the one on PATH otherwise.
func goTool() string {
	//lint:ignore SA1019 the toolchain that built the test binary is the best guess
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// moduleRoot returns the directory of this module's go.mod when this
// source file is where it was compiled from, and "" (the current
// directory) otherwise.
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return ""
	}
	return root
}
