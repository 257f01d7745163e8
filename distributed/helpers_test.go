package distributed_test

import (
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	cleanupHelper()
	if code == 0 {
		// Same checks as proctest.VerifyTestMain, after the binaries are
		// removed.
		if left := proctest.Children(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "child processes left after the tests: %v\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

// checkLeaks makes the test fail if, once its cleanups have run, a
// goroutine, child process or file descriptor is left. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	fds := proctest.CheckFDs(t)
	t.Cleanup(func() {
		proctest.VerifyNone(t)
		fds()
	})
}

// testLogger logs warnings of the pools and the package to the test log.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startServer starts an embedded server on a random port with JetStream
// in a temporary directory, stopped at the end of the test.
func startServer(t testing.TB, cfg embedded.Config) *embedded.Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Port == 0 {
		cfg.Port = embedded.RandomPort
	}
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connect connects to url, closed at the end of the test.
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := distributed.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newJetStream returns a JetStream context on nc.
func newJetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// localNode is a node in the test process: its own connection, procpool
// System and router.
type localNode struct {
	node *distributed.Node
	sys  *procpool.System
}

// startLocalNode starts a node serving job type t (Command defaults to the
// test worker), shut down at the end of the test if the test did not.
func startLocalNode(t testing.TB, url, name string, cfg distributed.Config, jt procpool.JobType, opts ...nats.Option) *localNode {
	t.Helper()
	return startLocalNodeWith(t, url, name, cfg, jt, procpool.Config{}, opts...)
}

// startLocalNodeWith is startLocalNode with its System configured by sc
// (its logger is the test's).
func startLocalNodeWith(t testing.TB, url, name string, cfg distributed.Config, jt procpool.JobType, sc procpool.Config, opts ...nats.Option) *localNode {
	t.Helper()
	if jt.Command == "" {
		jt.Command = testbin.Path(t)
	}
	nc := connect(t, url, opts...)
	sc.Logger = testLogger(t)
	sys := procpool.NewSystem(sc)
	r, err := sys.Spawn(jt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := distributed.NewNode(ctx, nc, cfg, distributed.NodeOptions{Name: name})
	if err == nil {
		err = n.Bind(ctx, r, distributed.BindOptions{})
	}
	if err != nil {
		_ = sys.Shutdown(ctx)
		t.Fatal(err)
	}
	ln := &localNode{node: n, sys: sys}
	t.Cleanup(func() { ln.shutdown(t) })
	return ln
}

// stats returns the node's stats for its job type once it holds no job:
// a job's counts are updated after its answer is published.
func (ln *localNode) stats(t testing.TB) distributed.NodeStats {
	t.Helper()
	proctest.WaitFor(10*time.Second, func() bool { return ln.node.Stats()[0].Held == 0 })
	return ln.node.Stats()[0]
}

// shutdown stops the node gracefully, then its system.
func (ln *localNode) shutdown(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ln.node.Shutdown(ctx); err != nil {
		t.Errorf("node %s shutdown: %v", ln.node.Name(), err)
	}
	if err := ln.sys.Shutdown(ctx); err != nil {
		t.Errorf("system shutdown: %v", err)
	}
}

// newProducer starts a producer, closed at the end of the test.
func newProducer(t testing.TB, nc *nats.Conn, cfg distributed.Config) *distributed.Producer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := distributed.NewProducer(ctx, nc, cfg, distributed.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// payloadOf is job i's payload: 1 KiB that differ from job to job.
func payloadOf(i int) []byte {
	b := make([]byte, 1<<10)
	s := strconv.Itoa(i)
	for k := range b {
		b[k] = s[k%len(s)] + byte(k/len(s))
	}
	return b
}

// digestOf is the result the sha512 job type gives job i.
func digestOf(i int) []byte {
	d := sha512.Sum512(payloadOf(i))
	return d[:]
}
