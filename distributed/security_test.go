package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/proctest"
)

// writeFile writes a file into dir and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// roundTrip runs one sha512 job through a node and a producer connected
// with opts, and fails the test unless it succeeds.
func roundTrip(t *testing.T, url string, cfg distributed.Config, nodeOpts, producerOpts []nats.Option) {
	t.Helper()
	startLocalNode(t, url, "n1", cfg, procpool.JobType{Name: "sha512", MaxWorkers: 1}, nodeOpts...)
	p := newProducer(t, connect(t, url, producerOpts...), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.Call(ctx, "sha512", procpool.Blob, payloadOf(7))
	if err != nil || string(res) != string(digestOf(7)) {
		t.Fatalf("job through the secured server: %x, %v", res, err)
	}
}

// refused fails the test if connecting with opts succeeds.
func refused(t *testing.T, url, what string, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err == nil {
		nc.Close()
		t.Errorf("%s: connected, want refused", what)
		return
	}
	t.Logf("%s: refused: %v", what, err)
}

// TestTLSWithClientCertificates: a server that requires TLS with client
// certificates of its CA serves nodes and producers that present them,
// and refuses a plain connection, a certificate of another CA, and a
// client that does not trust the server.
func TestTLSWithClientCertificates(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	conf := writeFile(t, t.TempDir(), "tls.conf", fmt.Sprintf(`
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
  timeout: 5
}
`, pki.ServerCert, pki.ServerKey, pki.CA))
	s := startServer(t, embedded.Config{ConfigFile: conf})
	url := strings.Replace(s.URL(), "nats://", "tls://", 1)
	creds := []nats.Option{nats.RootCAs(pki.CA), nats.ClientCert(pki.ClientCert, pki.ClientKey)}
	roundTrip(t, url, distributed.Config{}, creds, creds)

	refused(t, s.URL(), "no TLS")
	refused(t, url, "no client certificate", nats.RootCAs(pki.CA))
	refused(t, url, "another CA's client certificate", nats.RootCAs(pki.CA), nats.ClientCert(pki.OtherClientCert, pki.OtherClientKey))
	refused(t, url, "server not trusted", nats.ClientCert(pki.ClientCert, pki.ClientKey))
}

// TestNKeyUser: a server that knows its users by NKey serves a client
// signing with the seed in a file, and refuses one with another seed.
func TestNKeyUser(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := writeFile(t, dir, "user.nk", string(seed))
	conf := writeFile(t, dir, "nkeys.conf", fmt.Sprintf(`
accounts { APP { jetstream: enabled, users: [ { nkey: %s } ] } }
`, pub))
	s := startServer(t, embedded.Config{ConfigFile: conf})
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s.URL(), distributed.Config{}, []nats.Option{opt}, []nats.Option{opt})

	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()
	bad, err := nats.NkeyOptionFromSeed(writeFile(t, dir, "stranger.nk", string(strangerSeed)))
	if err != nil {
		t.Fatal(err)
	}
	refused(t, s.URL(), "unknown NKey", bad)
	refused(t, s.URL(), "no credentials")
}

// TestCredsFile: in operator mode (JWTs), a client with a .creds file of a
// user of a JetStream-enabled account is served; one of an unknown
// account is refused.
func TestCredsFile(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	operator, _ := nkeys.CreateOperator()
	opub, _ := operator.PublicKey()
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	account := func(js bool) (nkeys.KeyPair, string, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		c := jwt.NewAccountClaims(pub)
		if js {
			c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := c.Encode(operator)
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub, tok
	}
	app, appPub, appJWT := account(true)
	_, sysPub, sysJWT := account(false)
	creds := func(acc nkeys.KeyPair, name string) string {
		u, _ := nkeys.CreateUser()
		upub, _ := u.PublicKey()
		useed, _ := u.Seed()
		tok, err := jwt.NewUserClaims(upub).Encode(acc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(tok, useed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, name, string(b))
	}
	conf := writeFile(t, dir, "operator.conf", fmt.Sprintf(`
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
`, writeFile(t, dir, "operator.jwt", ojwt), sysPub, appPub, appJWT, sysPub, sysJWT))
	s := startServer(t, embedded.Config{ConfigFile: conf})
	userCreds := nats.UserCredentials(creds(app, "app.creds"))
	roundTrip(t, s.URL(), distributed.Config{}, []nats.Option{userCreds}, []nats.Option{userCreds})

	unknown, _ := nkeys.CreateAccount()
	refused(t, s.URL(), "user of an unknown account", nats.UserCredentials(creds(unknown, "unknown.creds")))
	refused(t, s.URL(), "no credentials")
}

// TestSubjectPermissions runs the permissions of docs/distributed.md: a
// producer that may only publish its jobs and read its results, and a node
// that may only take its job type's jobs and answer. Each works, and each
// is refused what belongs to the other.
func TestSubjectPermissions(t *testing.T) {
	checkLeaks(t)
	conf := writeFile(t, t.TempDir(), "permissions.conf", docsBlock(t, "permissions.conf"))
	t.Setenv("ADMIN_PASSWORD", "admin-secret")
	t.Setenv("PRODUCER_PASSWORD", "producer-secret")
	t.Setenv("NODE_PASSWORD", "node-secret")
	s := startServer(t, embedded.Config{ConfigFile: conf})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	admin := connect(t, s.URL(), nats.UserInfo("admin", "admin-secret"))
	if err := distributed.Setup(ctx, newJetStream(t, admin), distributed.Config{}, "sha512"); err != nil {
		t.Fatal(err)
	}
	cfg := distributed.Config{NoCreate: true}
	producerLogin := nats.UserInfo("web", "producer-secret")
	nodeLogin := nats.UserInfo("node", "node-secret")
	startLocalNode(t, s.URL(), "n1", cfg, procpool.JobType{Name: "sha512", MaxWorkers: 1}, nodeLogin)
	pnc := connect(t, s.URL(), producerLogin)
	p, err := distributed.NewProducer(ctx, pnc, cfg, distributed.ProducerOptions{ID: "web"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Call(ctx, "sha512", procpool.Blob, payloadOf(1))
	if err != nil || string(res) != string(digestOf(1)) {
		t.Fatalf("producer web: %x, %v", res, err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("producer Close: %v", err)
	}

	// The producer may not submit other job types, nor take another
	// producer's name, nor act as a node; the node may not submit jobs,
	// nor act as a producer. All checked at once: a refused request has no
	// answer and fails only when its context ends.
	pnc, pdenied := deniedConn(t, s.URL(), producerLogin)
	p2, err := distributed.NewProducer(ctx, pnc, cfg, distributed.ProducerOptions{ID: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close(ctx)
	nnc, ndenied := deniedConn(t, s.URL(), nodeLogin)
	var wg sync.WaitGroup
	for _, c := range []struct {
		denied  func(string, func(context.Context) error)
		subject string
		op      func(context.Context) error
	}{
		{pdenied, `"$JS.API.STREAM.INFO.procpool_jobs_other"`, func(ctx context.Context) error {
			_, err := p2.Submit(ctx, "other", procpool.Blob, nil)
			return err
		}},
		{pdenied, `"$JS.API.CONSUMER.CREATE.procpool_results.results_billing`, func(ctx context.Context) error {
			_, err := distributed.NewProducer(ctx, pnc, cfg, distributed.ProducerOptions{ID: "billing"})
			return err
		}},
		{pdenied, `"$JS.API.STREAM.INFO.procpool_dead"`, func(ctx context.Context) error {
			_, err := distributed.NewNode(ctx, pnc, cfg, distributed.NodeOptions{})
			return err
		}},
		{pdenied, `"$JS.API.CONSUMER.INFO.procpool_jobs_sha512.nodes"`, func(ctx context.Context) error {
			_, err := newJetStream(t, pnc).Consumer(ctx, cfg.JobStream("sha512"), distributed.NodeConsumer)
			return err
		}},
		{ndenied, `"procpool.jobs.sha512"`, func(ctx context.Context) error {
			_, err := newJetStream(t, nnc).Publish(ctx, cfg.JobSubject("sha512"), []byte("forged"))
			return err
		}},
		{ndenied, `"$JS.API.CONSUMER.CREATE.procpool_results.results_web`, func(ctx context.Context) error {
			_, err := distributed.NewProducer(ctx, nnc, cfg, distributed.ProducerOptions{ID: "web"})
			return err
		}},
	} {
		wg.Go(func() { c.denied(c.subject, c.op) })
	}
	wg.Wait()
}

// deniedConn connects and returns a check that an operation fails because
// the server refused it a subject: the operation returns an error and the
// server reports a permissions violation naming the subject (whose start
// is given, quoted). Checks may run at once.
func deniedConn(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, func(subject string, op func(context.Context) error)) {
	var mu sync.Mutex
	var violations []string
	nc := connect(t, url, append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}
	}))...)
	seen := func(subject string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range violations {
			if strings.Contains(v, subject) {
				return true
			}
		}
		return false
	}
	return nc, func(subject string, op func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := op(ctx); err == nil {
			t.Errorf("allowed, want refused: %s", subject)
			return
		}
		if !proctest.WaitFor(5*time.Second, func() bool { return seen(subject) }) {
			t.Errorf("no permissions violation for %s", subject)
		}
	}
}

// docsBlock returns the code block that follows the line naming it in
// docs/distributed.md.
func docsBlock(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "distributed.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+name+" -->")
	if !ok {
		t.Fatalf("docs/distributed.md has no block marked %s", name)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if ok {
		_, rest, ok = strings.Cut(rest, "\n") // the fence's language
	}
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/distributed.md: block %s is not fenced", name)
	}
	return block
}
