package conformance_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/procpool/procpool/conformance"
	"github.com/procpool/procpool/internal/gobuild"
	"github.com/procpool/procpool/internal/proctest"
)

func TestMain(m *testing.M) { proctest.VerifyTestMain(m) }

// TestGo runs the suite against the Go SDK (package worker).
func TestGo(t *testing.T) {
	bin, err := gobuild.Build(t.TempDir(), "goworker", "github.com/procpool/procpool/conformance/goworker")
	if err != nil {
		t.Fatal(err)
	}
	conformance.Run(t, conformance.Worker{Command: bin, SharedMemory: true})
}

// TestPython runs the suite against the Python SDK (sdk/python), with the
// interpreter FindPython picks.
func TestPython(t *testing.T) {
	python, why := FindPython()
	if python == "" {
		t.Skipf("no Python runtime for the Python SDK: %s", why)
	}
	script, err := filepath.Abs("../sdk/python/tests/conformance_worker.py")
	if err != nil {
		t.Fatal(err)
	}
	conformance.Run(t, conformance.Worker{Command: python, Args: []string{script}, SharedMemory: true})
}

// TestNode runs the suite against the Node.js SDK (sdk/node), whose
// dependencies `npm ci` installs.
func TestNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: the Node.js SDK is not tested")
	}
	dir, err := filepath.Abs("../sdk/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@msgpack", "msgpack")); err != nil {
		t.Fatalf("node is installed but the SDK's dependencies are not: run `npm ci` in %s (make test does): %v", dir, err)
	}
	conformance.Run(t, conformance.Worker{Command: node, Args: []string{filepath.Join(dir, "test", "conformance-worker.js")}, SharedMemory: true})
}

// FindPython returns the first Python 3 that can import msgpack: $PROCPOOL_PYTHON,
// /usr/bin/python3 (Debian's python3-msgpack installs msgpack for it), then
// the python3 on PATH; or "" and why none would do.
func FindPython() (string, string) {
	candidates := []string{os.Getenv("PROCPOOL_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	tried := ""
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if err := exec.Command(p, "-c", "import sys, msgpack; assert sys.version_info >= (3, 9)").Run(); err == nil {
			return p, ""
		}
		tried += " " + p
	}
	if tried == "" {
		return "", "no python3 found"
	}
	return "", "no Python ≥ 3.9 with msgpack among" + tried + " (apt-get install python3-msgpack)"
}
