package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric"
)

func TestMetricsServeOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{":9464", "0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464", "localhost:9464", "nonsense"} {
		if m, err := newMetrics(addr); err == nil {
			m.close()
			t.Errorf("newMetrics(%q) accepted a host that is not a loopback IP", addr)
		}
	}
}

func TestMetricsPrintAndServe(t *testing.T) {
	m, err := newMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.close(); err != nil {
			t.Error(err)
		}
	}()
	meter := m.provider.Meter("test")
	c, _ := meter.Int64Counter("procpool.test.things", metric.WithUnit("{thing}"))
	c.Add(context.Background(), 3)
	h, _ := meter.Float64Histogram("procpool.test.duration", metric.WithUnit("s"))
	h.Record(context.Background(), 0.5)
	other, _ := meter.Int64Counter("other.things")
	other.Add(context.Background(), 1)

	var out bytes.Buffer
	if err := m.print(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"procpool_test_things_total 3", "procpool_test_duration_seconds_count 1", "bucket lines left out"} {
		if !strings.Contains(s, want) {
			t.Errorf("print lacks %q:\n%s", want, s)
		}
	}
	for _, unwanted := range []string{"_bucket{", "other_things"} {
		if strings.Contains(s, unwanted) {
			t.Errorf("print has %q:\n%s", unwanted, s)
		}
	}

	resp, err := http.Get("http://" + m.addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "procpool_test_things_total 3") {
		t.Errorf("/metrics lacks the counter:\n%s", body)
	}
}
