// Package gobuild builds a main package of this module into a binary, with
// the Go toolchain that built the calling program. Tests, benchmarks and the
// demo use it to build their worker binaries on a machine with only Go.
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build runs `go build -o dir/name importPath` from the module's root and
// returns the binary's path. The go output is in the error on failure.
func Build(dir, name, importPath string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goTool(), "build", "-o", bin, importPath)
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", importPath, err, out)
	}
	return bin, nil
}

// goTool returns the go command of the toolchain that built this program if
// it is still there, and the one on PATH otherwise.
func goTool() string {
	//lint:ignore SA1019 the toolchain that built this program is the best guess
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// moduleRoot returns the directory of this module's go.mod when this source
// file is where it was compiled from, and "" (the current directory)
// otherwise.
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
