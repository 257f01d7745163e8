package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

// TestRequestCarriesAttemptAndTraceContext: the worker sees the job's
// attempt and the W3C trace context of the job's span, a child of the
// caller's, so that its own spans join the trace.
func TestRequestCarriesAttemptAndTraceContext(t *testing.T) {
	o := newOtelSystem(t)
	jt := jobType(t, "info")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	r, err := o.sys.Spawn(jt)
	require.NoError(t, err)
	ctx, caller := o.tp.Tracer("test").Start(context.Background(), "caller")
	defer caller.End()
	out, err := r.Call(ctx, procpool.Blob, nil)
	require.NoError(t, err)
	var id, attempt int
	var tp string
	_, err = fmt.Sscanf(string(out), "id=%d attempt=%d traceparent=%s", &id, &attempt, &tp)
	require.NoError(t, err, "%q", out)
	assert.Equal(t, 1, attempt)
	parts := strings.Split(tp, "-")
	require.Len(t, parts, 4, "a W3C traceparent: %q", tp)
	assert.Equal(t, caller.SpanContext().TraceID().String(), parts[1], "the worker joins the caller's trace")
	assert.NotEqual(t, caller.SpanContext().SpanID().String(), parts[2], "as a child of the job's span")
}

// TestNoFeaturesOffersNone: with NoFeatures the hello offers nothing, so
// the request carries no metadata (for workers older than the features).
func TestNoFeaturesOffersNone(t *testing.T) {
	o := newOtelSystem(t)
	jt := jobType(t, "info")
	jt.NoFeatures = true
	r, err := o.sys.Spawn(jt)
	require.NoError(t, err)
	ctx, caller := o.tp.Tracer("test").Start(context.Background(), "caller")
	defer caller.End()
	out, err := r.Call(ctx, procpool.Blob, nil)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(out), "attempt=1 traceparent="), "no trace context: %q", out)
}

// TestPanicCarriesItsDetail: a panic's message is its first line; the
// stack comes in the RemoteError's Detail.
func TestPanicCarriesItsDetail(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "panic")
	jt.Policy.Intensity = procpool.Intensity{MaxRestarts: 100, Window: time.Minute}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, []byte("boom"))
	var re *procpool.RemoteError
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, "panic", re.Code)
	assert.NotContains(t, re.Message, "\n", "one line")
	assert.Contains(t, re.Message, "boom")
	assert.Contains(t, re.Detail, "internal/testworker/main.go", "the stack is in the detail")
}
