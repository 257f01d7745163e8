package main

import (
	"context"
	"testing"
	"time"
	"runtime"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/testbin"
)

func TestScratch(t *testing.T) {
	bin, _ := testbin.Build()
	e := &env{cfg: fullConfig(), bin: bin, workloads: workloads(), cores: runtime.NumCPU()}
	ctx := context.Background()
	w := e.workload("1KiB")
	for rep := 0; rep < 3; rep++ {
		for _, kind := range kinds {
			for _, m := range modes(2) {
				if m.Kind == inProcess { continue }
				s, err := measureThroughput(ctx, e, w, kind, m, 10000)
				if err != nil { t.Fatal(err) }
				h, wk := s.cpuPerOp()
				t.Logf("%s %s %.0f jobs/s host %.1f worker %.1f", kindName(kind), m.Key, s.Rate(), h, wk)
			}
		}
	}
	// pool per job pieces
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		sys := procpool.NewSystem(procpool.Config{})
		t1 := time.Now()
		r, _ := sys.Spawn(procpool.JobType{Name: "sha512", Command: e.bin, MinWorkers: 1, MaxWorkers: 1})
		t2 := time.Now()
		if err := poolJob(ctx, r, w, procpool.Blob, 0); err != nil { t.Fatal(err) }
		t3 := time.Now()
		shutdown(sys)
		t4 := time.Now()
		t.Logf("new %v spawn %v call %v shutdown %v", t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3))
	}
}
