package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procpool/procpool/internal/proctest"
)

// TestDistributedQuick runs the distributed experiment briefly, in-process:
// every digest is checked (a wrong one fails the run), the speed is not.
// It writes its report into a temporary directory and leaves no worker
// process or goroutine behind.
func TestDistributedQuick(t *testing.T) {
	cfg := quickConfig()
	cfg.Jobs, cfg.JobsMiB = 100, 6
	var out bytes.Buffer
	cfg.Out = &out
	cfg.Write, cfg.Docs = true, t.TempDir()
	err := runDistributed(cfg)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(cfg.Docs, "benchmarks-distributed.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range distModes {
		for _, doc := range []string{out.String(), string(md)} {
			if !strings.Contains(doc, m.Name) {
				t.Errorf("report lacks the row %q", m.Name)
			}
		}
	}
	if !strings.Contains(out.String(), distTitle) {
		t.Errorf("output lacks %q", distTitle)
	}
	proctest.VerifyNone(t)
}
