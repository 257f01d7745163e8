package telemetry

import (
	"reflect"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// liveness tells whether a provider reports anything, cheaply enough to
// ask once per job. It is the one place that knows the three cases:
//
//   - a no-op provider (metric/noop, trace/noop) never reports;
//   - a provider of the application's always reports (what it keeps is
//     its own business: views, samplers);
//   - OpenTelemetry's default global provider reports nothing until the
//     application sets a global provider of its own, and forwards
//     everything to that one from then on. Until then, a job costs one
//     atomic load and one type comparison here, and nothing else.
type liveness struct {
	mode    uint8
	global  reflect.Type // modeGlobal: the type of the default global provider
	current func() any   // modeGlobal: the global provider now
	set     atomic.Bool  // modeGlobal: the application has set its own
}

const (
	modeOff    uint8 = iota // a no-op provider
	modeOn                  // the application's provider
	modeGlobal              // the default global provider
)

func meterLiveness(mp metric.MeterProvider) *liveness {
	switch mp.(type) {
	case metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return &liveness{mode: modeOff}
	}
	return newLiveness(mp, func() any { return otel.GetMeterProvider() })
}

func tracerLiveness(tp trace.TracerProvider) *liveness {
	switch tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return &liveness{mode: modeOff}
	}
	return newLiveness(tp, func() any { return otel.GetTracerProvider() })
}

func newLiveness(p any, current func() any) *liveness {
	if !isGlobalDefault(p) {
		return &liveness{mode: modeOn}
	}
	return &liveness{mode: modeGlobal, global: reflect.TypeOf(p), current: current}
}

// live reports whether the provider reports anything now.
func (l *liveness) live() bool {
	switch l.mode {
	case modeOn:
		return true
	case modeGlobal:
		if l.set.Load() {
			return true
		}
		if reflect.TypeOf(l.current()) != l.global {
			l.set.Store(true)
			return true
		}
	}
	return false
}

// globalPackage is where OpenTelemetry's default global providers live:
// the ones otel.GetMeterProvider and otel.GetTracerProvider return until
// the application sets its own, and that forward to those from then on.
const globalPackage = "go.opentelemetry.io/otel/internal/global"

// isGlobalDefault reports whether p is one of OpenTelemetry's default
// global providers (not one the application set).
func isGlobalDefault(p any) bool {
	typ := reflect.TypeOf(p)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ.PkgPath() == globalPackage
}
