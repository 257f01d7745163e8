package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metrics is the demo's OpenTelemetry setup: an SDK MeterProvider whose
// reader is otel's Prometheus exporter, writing into a registry of its own
// (not Prometheus's global one), and, if asked, an HTTP server for it on
// a loopback address.
type metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	server   *http.Server
	addr     net.Addr // where server listens
	served   chan error
}

// newMetrics sets the metrics up. A non-empty addr (host:port, the host a
// loopback address) serves them at http://addr/metrics until close.
func newMetrics(addr string) (*metrics, error) {
	m := &metrics{registry: prometheus.NewRegistry()}
	exporter, err := otelprom.New(otelprom.WithRegisterer(m.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	m.provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	if addr == "" {
		return m, nil
	}
	if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	m.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.served, m.addr = make(chan error, 1), ln.Addr()
	go func() { m.served <- m.server.Serve(ln) }()
	fmt.Printf("metrics: http://%s/metrics while the demo runs\n", ln.Addr())
	return m, nil
}

// loopbackOnly refuses an address whose host is not a loopback IP: the
// demo's metrics are for this machine only.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-metrics-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-metrics-addr %q: the host must be a loopback address such as 127.0.0.1", addr)
	}
	return nil
}

// print writes procpool's metrics in the Prometheus text format, the
// histograms' bucket lines left out (their _sum and _count stay).
func (m *metrics) print(w io.Writer) error {
	families, err := m.registry.Gather()
	if err != nil {
		return err
	}
	var text bytes.Buffer
	for _, f := range families {
		if name := f.GetName(); strings.HasPrefix(name, "procpool_") || strings.HasPrefix(name, "process_") {
			if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
				return err
			}
		}
	}
	buckets := 0
	sc := bufio.NewScanner(&text)
	for sc.Scan() {
		line := sc.Text()
		if name, _, _ := strings.Cut(line, "{"); strings.HasSuffix(name, "_bucket") {
			buckets++
			continue
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "(%d histogram bucket lines left out)\n", buckets)
	return sc.Err()
}

// close stops the server, if any, and the provider.
func (m *metrics) close() error {
	var errs []error
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs = append(errs, m.server.Shutdown(ctx))
		if err := <-m.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.provider.Shutdown(context.Background()))
	return errors.Join(errs...)
}
