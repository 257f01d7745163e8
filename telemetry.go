package procpool

import (
	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/internal/telemetry"
)

// newTelemetry returns the OpenTelemetry adapter of a System, reporting to
// mp and tp (nil: the global providers, which report nothing until the
// application sets them). docs/metrics.md lists what it reports. A System
// wires it in three places:
//
//   - Spawn gives each router the adapter's Observer(jobType) through
//     actors.RouterOptions: the router tells it about its jobs and
//     workers;
//   - Spawn then calls Watch(jobType, router.Stats): the observed gauges
//     (queue length, workers by phase, memory) read the router's Stats at
//     each collection, in place of any router spawned earlier under the
//     same name;
//   - Shutdown calls Close, so that a provider that outlives the System
//     stops asking for its Stats.
//
// The adapter is nil when both providers are no-op ones; its methods do
// nothing then, and its Observer is nil, so routers skip every call.
// Instruments that cannot be created are logged and left out.
func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider, logger hclog.Logger) *telemetry.Telemetry {
	t, err := telemetry.New(mp, tp)
	if err != nil {
		logger.Warn("OpenTelemetry instruments missing", "error", err)
	}
	return t
}
