package embedded_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/procpool/procpool/distributed/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestListensOnLoopback: a server started with the defaults, or with a
// configuration file that names no host, listens on 127.0.0.1 only.
func TestListensOnLoopback(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "plain.conf")
	if err := os.WriteFile(conf, []byte("max_connections: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []embedded.Config{{}, {ConfigFile: conf}} {
		cfg.Dir, cfg.Port = t.TempDir(), embedded.RandomPort
		s, err := embedded.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		addr, ok := s.NATS().Addr().(*net.TCPAddr)
		if !ok || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("config %+v: listening on %v, want 127.0.0.1", cfg, s.NATS().Addr())
		}
		if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") {
			t.Errorf("URL %s", s.URL())
		}
		s.Shutdown()
	}
}

// TestRefusesNoDirectory: JetStream needs a directory.
func TestRefusesNoDirectory(t *testing.T) {
	if _, err := embedded.Start(embedded.Config{Port: embedded.RandomPort}); err == nil {
		t.Error("a server without a JetStream directory started")
	}
}

// TestStreamsSurviveRestart: a message in a file-storage stream is there
// after the server is shut down and started again on the same directory,
// and the default max_payload takes 1 MiB messages.
func TestStreamsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload := make([]byte, 1<<20)
	payload[12345] = 7
	for round := range 2 {
		s, err := embedded.Start(embedded.Config{Dir: dir, Port: embedded.RandomPort})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "s", payload); err != nil {
				t.Fatal(err)
			}
		} else {
			st, err := js.Stream(ctx, "S")
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.GetMsg(ctx, 1)
			if err != nil || len(m.Data) != len(payload) || m.Data[12345] != 7 {
				t.Fatalf("after the restart: %v", err)
			}
		}
		nc.Close()
		s.Shutdown()
	}
}
