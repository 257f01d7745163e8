package main

import (
	"bytes"
	"testing"

	"github.com/procpool/procpool/internal/proctest"
)

// TestTelemetryExperiment runs the OpenTelemetry experiment briefly (go
// run ./bench -otel -runs 1): every job is checked, its table and target
// are printed, and no worker process or goroutine is left behind.
func TestTelemetryExperiment(t *testing.T) {
	cfg := quickConfig()
	cfg.OTel, cfg.Jobs = true, 200
	var out bytes.Buffer
	cfg.Out = &out
	err := run(cfg)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	// Every job is counted once the routers call their Observer; until
	// then, none is.
	if !bytes.Contains(out.Bytes(), []byte("met: yes")) && !bytes.Contains(out.Bytes(), []byte("met: no")) &&
		!bytes.Contains(out.Bytes(), []byte("procpool.job.count counted no job")) {
		t.Error("procpool.job.count counted some jobs of a run, not all")
	}
	for _, m := range otelModes {
		if !bytes.Contains(out.Bytes(), []byte(m.Name)) {
			t.Errorf("output lacks the row %q", m.Name)
		}
	}
	if !bytes.Contains(out.Bytes(), []byte("target: metrics on keeps")) {
		t.Error("output lacks the target")
	}
	proctest.VerifyNone(t)
}
