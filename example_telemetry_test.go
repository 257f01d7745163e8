package procpool_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/procpool/procpool"
)

// A System reports its metrics to the MeterProvider of its Config: here
// an SDK one with a ManualReader, read as a test would; a program gives it
// an exporter's reader instead (docs/metrics.md shows a Prometheus one).
func ExampleConfig_meterProvider() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	sys := procpool.NewSystem(procpool.Config{MeterProvider: mp})
	defer sys.Shutdown(context.Background())
	_, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: workerBinary(), MinWorkers: 1, MaxWorkers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := sys.Call(context.Background(), "sha512", []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "procpool.worker.count" {
				continue
			}
			workers := int64(0)
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				workers += p.Value // one point per phase
			}
			fmt.Printf("%s (%s): %d\n", m.Name, m.Unit, workers)
		}
	}
	// Output: procpool.worker.count ({worker}): 1
}
