package distributed

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// traceContext is the propagation a job's trace context crosses the queue
// with when the options set none: W3C traceparent and tracestate headers.
// A caller whose context carries a span thus has the job's span on its
// node (and the worker's own spans) join its trace.
var traceContext = propagation.TraceContext{}

// headerCarrier adapts a nats.Header to propagation.TextMapCarrier.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// injectTraceContext writes ctx's trace context into h.
func injectTraceContext(ctx context.Context, h nats.Header) {
	traceContext.Inject(ctx, headerCarrier(h))
}

// extractTraceContext returns ctx with the trace context h carries.
func extractTraceContext(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return traceContext.Extract(ctx, headerCarrier(h))
}
