package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestQuick runs the bench in -quick mode, in-process: every experiment
// runs briefly and every digest is checked; the speed is not. It writes
// the report into a temporary directory (not docs/), and leaves no worker
// process or goroutine behind.
func TestQuick(t *testing.T) {
	cfg := quickConfig()
	cfg.Jobs, cfg.JobsMiB = 100, 6
	cfg.StartupCycles, cfg.FastCycles = 3, 200
	cfg.Scaling.Burst = 15
	cfg.Scaling.Idle = 300 * time.Millisecond
	cfg.Scaling.Pause = time.Second
	if testing.Short() {
		cfg.Peer = false // the Python peer takes a few seconds
	}
	var out bytes.Buffer
	cfg.Out = &out
	cfg.Write, cfg.Docs = true, t.TempDir()
	start := time.Now()
	err := run(cfg)
	t.Logf("quick bench took %v; output:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{startupTitle, "2b. Throughput", "4. The framework", "5. Peer", scalingTitle, "Targets"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	md, err := os.ReadFile(filepath.Join(cfg.Docs, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"benchmarks-startup.svg", "benchmarks-throughput.svg", "benchmarks-scaling.svg"} {
		svg, err := os.ReadFile(filepath.Join(cfg.Docs, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.HasSuffix(svg, []byte("</svg>\n")) {
			t.Errorf("%s is not an SVG document", f)
		}
		if !bytes.Contains(md, []byte("]("+f+")")) {
			t.Errorf("benchmarks.md does not link %s", f)
		}
	}
	proctest.VerifyNone(t)
}

// TestSDKOnly runs `-sdk -workloads 1KiB` briefly: table 5b and its
// targets only, no other experiment, nothing written; an unknown workload
// is refused.
func TestSDKOnly(t *testing.T) {
	cfg := quickConfig()
	cfg.Jobs = 100
	cfg.SDK, cfg.Write = true, false
	cfg.Workloads = []string{"1KiB"}
	if testing.Short() {
		cfg.Peer = false
	}
	var out bytes.Buffer
	cfg.Out = &out
	err := run(cfg)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5b. Worker SDKs", "SHA-512 1 KiB BLOB", "Targets"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, unwanted := range []string{startupTitle, "2b. Throughput", "no-load", scalingTitle} {
		if bytes.Contains(out.Bytes(), []byte(unwanted)) {
			t.Errorf("output has %q", unwanted)
		}
	}
	cfg.Workloads = []string{"2KiB"}
	if err := run(cfg); err == nil || !strings.Contains(err.Error(), "no workload") {
		t.Errorf("an unknown workload: got %v, want a refusal", err)
	}
	proctest.VerifyNone(t)
}

// TestWorkloadsFilterOnlyTheThroughputTables: -workloads picks the
// throughput tables' workloads; the experiments with a workload of their
// own (start-up and latency 1 KiB, CallFill and scaling 1 MiB) still find
// it, where a full run with -workloads noop used to panic.
func TestWorkloadsFilterOnlyTheThroughputTables(t *testing.T) {
	cfg := quickConfig()
	cfg.Workloads = []string{"noop"}
	e, err := newEnv(cfg, "worker")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.workloads) != 1 || e.workloads[0].Key != "noop" {
		t.Fatalf("throughput workloads %v, want noop alone", e.workloads)
	}
	for _, key := range []string{"noop", "1KiB", "1MiB"} {
		if w := e.workload(key); w == nil || w.Key != key {
			t.Errorf("workload(%q) = %v", key, w)
		}
	}
	cfg.Workloads = []string{"2KiB"}
	if _, err := newEnv(cfg, "worker"); err == nil || !strings.Contains(err.Error(), "no workload") {
		t.Errorf("an unknown workload: got %v, want a refusal", err)
	}
}
