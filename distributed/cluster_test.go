package distributed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/internal/proctest"
)

// clusterJobs is the number of jobs of each cluster run.
const clusterJobs = 10000

// clusterConfig is what the test process uses; the helper nodes use the
// same ack wait (2s) and MaxDeliver.
var clusterConfig = distributed.Config{AckWait: 2 * time.Second}

// outcome is what the caller of one job saw.
type outcome struct {
	node       string
	deliveries int
	err        error
	seen       int // results the caller got (must be 1)
}

// jobRun runs jobs through a producer from callers goroutines, each
// submitting a job and waiting for it, and runs each action in the test's
// goroutine once that many jobs have resolved.
type jobRun struct {
	t       *testing.T
	p       *distributed.Producer
	n       int
	callers int
	jobType string
	payload func(i int) []byte
	check   func(i int, res []byte) error
	actions []action
}

type action struct {
	after int
	do    func()
}

func (r *jobRun) run(ctx context.Context) []outcome {
	t := r.t
	if r.jobType == "" {
		r.jobType = "sha512"
	}
	if r.payload == nil {
		r.payload = payloadOf
	}
	if r.check == nil {
		r.check = func(i int, res []byte) error {
			if !bytes.Equal(res, digestOf(i)) {
				return fmt.Errorf("job %d: wrong digest %x", i, res[:min(8, len(res))])
			}
			return nil
		}
	}
	out := make([]outcome, r.n)
	var done atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range r.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= r.n {
					return
				}
				o := &out[i]
				j, err := r.p.Submit(ctx, r.jobType, procpool.Blob, r.payload(i))
				if err == nil {
					var res []byte
					res, err = j.Wait(ctx)
					o.node, o.deliveries = j.Node(), j.Deliveries()
					if err == nil {
						err = r.check(i, res)
					}
				}
				o.err = err
				o.seen++
				done.Add(1)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	actions := r.actions
	for {
		select {
		case <-finished:
			for _, a := range actions {
				t.Errorf("action after %d jobs never ran", a.after)
			}
			return out
		case <-tick.C:
			for len(actions) > 0 && done.Load() >= int64(actions[0].after) {
				actions[0].do()
				actions = actions[1:]
			}
		}
	}
}

// checkOutcomes fails the test unless every job got exactly one, correct
// result, and returns the jobs per node and the jobs whose winning result
// came from a redelivery.
func checkOutcomes(t *testing.T, out []outcome) (perNode map[string]int, redelivered int) {
	t.Helper()
	perNode = map[string]int{}
	bad := 0
	for i, o := range out {
		if o.err != nil || o.seen != 1 {
			if bad++; bad <= 10 {
				t.Errorf("job %d: err %v, %d results seen", i, o.err, o.seen)
			}
			continue
		}
		perNode[o.node]++
		if o.deliveries > 1 {
			redelivered++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d jobs without exactly one correct result", bad, len(out))
	}
	return perNode, redelivered
}

// checkDrained fails the test unless the job stream and the result stream
// end up empty: every job was acknowledged, every result consumed.
func checkDrained(t *testing.T, js jetstream.JetStream, cfg distributed.Config, jobType string) {
	t.Helper()
	for _, name := range []string{cfg.JobStream(jobType), cfg.ResultStream()} {
		var msgs uint64
		ok := proctest.WaitFor(20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			info, err := s.Info(ctx)
			if err != nil {
				return false
			}
			msgs = info.State.Msgs
			return msgs == 0
		})
		if !ok {
			t.Errorf("stream %s still holds %d messages", name, msgs)
		}
	}
}

// nodeStats parses the stats line a helper node prints when stopped.
func nodeStats(t *testing.T, lines []string) distributed.NodeStats {
	t.Helper()
	for _, l := range lines {
		if js, ok := strings.CutPrefix(l, "stats "); ok {
			var st []distributed.NodeStats
			if err := json.Unmarshal([]byte(js), &st); err != nil || len(st) != 1 {
				t.Fatalf("bad stats line %q: %v", l, err)
			}
			return st[0]
		}
	}
	t.Fatalf("no stats line in %q", lines)
	return distributed.NodeStats{}
}

func summary(perNode map[string]int) string {
	names := make([]string, 0, len(perNode))
	for n := range perNode {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, perNode[n])
	}
	return b.String()
}

// cluster starts a server process and three node processes.
func cluster(t *testing.T, nodeArgs ...string) (url string, nodes []*proc) {
	_, url = serverProc(t, t.TempDir(), freePort(t))
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, nodeProc(t, url, fmt.Sprintf("n%d", i), nodeArgs...))
	}
	return url, nodes
}

// TestClusterEveryJobOnce: three node processes, 10,000 jobs from this
// process; every job gets exactly one correct result, and every node takes
// a share.
func TestClusterEveryJobOnce(t *testing.T) {
	checkLeaks(t)
	url, nodes := cluster(t)
	nc := connect(t, url)
	p := newProducer(t, nc, clusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out := (&jobRun{t: t, p: p, n: clusterJobs, callers: 48}).run(ctx)
	took := time.Since(start)
	perNode, redelivered := checkOutcomes(t, out)
	t.Logf("%d jobs in %v:%s; %d redelivered; %+v", clusterJobs, took.Round(time.Millisecond), summary(perNode), redelivered, p.Stats())
	for _, n := range nodes {
		if perNode[n.name] == 0 {
			t.Errorf("node %s ran no job", n.name)
		}
	}
	if st := p.Stats(); st.Succeeded != clusterJobs || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("producer stats %+v", st)
	}
	checkDrained(t, newJetStream(t, nc), clusterConfig, "sha512")
	var received uint64
	outs := stopAll(t, nodes...)
	for i, n := range nodes {
		st := nodeStats(t, outs[i])
		received += st.Received
		if st.Held != 0 || st.Succeeded != uint64(perNode[n.name]) {
			t.Errorf("node %s: %+v, but %d results won", n.name, st, perNode[n.name])
		}
	}
	if received < clusterJobs {
		t.Errorf("nodes received %d deliveries for %d jobs", received, clusterJobs)
	}
	verifyNoWorkers(t)
}

// TestClusterNodeKilled: one node is SIGKILLed a third of the way and a
// new one started at two thirds: no job is lost, none has two results, and
// the jobs the killed node held are redelivered to the others after the
// ack wait. Each node runs 2 workers with 4 jobs in flight, so that the
// killed one holds several.
func TestClusterNodeKilled(t *testing.T) {
	checkLeaks(t)
	url, nodes := cluster(t, "-in-flight", "4")
	nc := connect(t, url)
	p := newProducer(t, nc, clusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var restarted *proc
	r := &jobRun{t: t, p: p, n: clusterJobs, callers: 48, actions: []action{
		{after: clusterJobs / 3, do: func() { nodes[1].kill(); t.Logf("killed %s", nodes[1].name) }},
		{after: 2 * clusterJobs / 3, do: func() {
			restarted = nodeProc(t, url, "n2-restarted", "-in-flight", "4")
			t.Log("restarted n2")
		}},
	}}
	out := r.run(ctx)
	perNode, redelivered := checkOutcomes(t, out)
	t.Logf("%d jobs:%s; %d answered on a redelivery; %+v", clusterJobs, summary(perNode), redelivered, p.Stats())
	for i, o := range out {
		if o.deliveries > 1 && o.node == nodes[1].name {
			t.Errorf("job %d: redelivered, yet its result came from the killed node", i)
		}
	}
	if perNode["n2-restarted"] == 0 {
		t.Error("the restarted node ran no job")
	}
	if st := p.Stats(); st.Succeeded != clusterJobs || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("producer stats %+v", st)
	}
	checkDrained(t, newJetStream(t, nc), clusterConfig, "sha512")
	// The killed node's unacknowledged jobs came back to the others (the
	// result of some had been stored already: their second one was
	// dropped as a duplicate).
	var again uint64
	for _, lines := range stopAll(t, nodes[0], nodes[2], restarted) {
		again += nodeStats(t, lines).Redelivered
	}
	t.Logf("redeliveries received by the other nodes: %d", again)
	if again == 0 {
		t.Error("no job was redelivered: the killed node held none?")
	}
	verifyNoWorkers(t)
}

// TestClusterServerRestarted: the NATS server is killed (SIGKILL, no
// chance to flush anything) a third of the way and started again on the
// same port and directory: the jobs and results in its streams survive
// (file storage: a single-replica stream writes each message to its file
// before acknowledging it), producers and nodes reconnect, and no job is
// lost.
func TestClusterServerRestarted(t *testing.T) {
	checkLeaks(t)
	dir, port := t.TempDir(), freePort(t)
	srv, url := serverProc(t, dir, port)
	var nodes []*proc
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, nodeProc(t, url, fmt.Sprintf("n%d", i)))
	}
	nc := connect(t, url)
	p := newProducer(t, nc, clusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var restarts int
	r := &jobRun{t: t, p: p, n: clusterJobs, callers: 48, actions: []action{
		{after: clusterJobs / 3, do: func() {
			srv.kill()
			time.Sleep(500 * time.Millisecond) // everyone notices the loss
			srv, _ = serverProc(t, dir, port)
			restarts++
			t.Log("server killed and restarted")
		}},
	}}
	out := r.run(ctx)
	perNode, redelivered := checkOutcomes(t, out)
	t.Logf("%d jobs:%s; %d finished on a redelivery; %+v", clusterJobs, summary(perNode), redelivered, p.Stats())
	if restarts != 1 {
		t.Fatalf("server restarted %d times", restarts)
	}
	if st := p.Stats(); st.Succeeded != clusterJobs || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("producer stats %+v", st)
	}
	checkDrained(t, newJetStream(t, nc), clusterConfig, "sha512")
	stopAll(t, nodes...)
	verifyNoWorkers(t)
}

// TestJobsWaitForFirstNode: jobs submitted while no node runs wait in
// their stream and run once the first node starts.
func TestJobsWaitForFirstNode(t *testing.T) {
	checkLeaks(t)
	_, url := serverProc(t, t.TempDir(), freePort(t))
	nc := connect(t, url)
	p := newProducer(t, nc, clusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 300
	jobs := make([]*distributed.Job, n)
	for i := range jobs {
		var err error
		if jobs[i], err = p.Submit(ctx, "sha512", procpool.Blob, payloadOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	js := newJetStream(t, nc)
	s, err := js.Stream(ctx, clusterConfig.JobStream("sha512"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("stream holds %d jobs, want %d", info.State.Msgs, n)
	}
	for i, j := range jobs {
		select {
		case <-j.Done():
			res, err := j.Result()
			t.Fatalf("job %d resolved with no node running: %x, %v", i, res, err)
		default:
		}
	}
	node := nodeProc(t, url, "first")
	for i, j := range jobs {
		res, err := j.Wait(ctx)
		if err != nil || !bytes.Equal(res, digestOf(i)) {
			t.Fatalf("job %d: %x, %v", i, res, err)
		}
		if j.Node() != "first" {
			t.Errorf("job %d ran on %q", i, j.Node())
		}
	}
	checkDrained(t, js, clusterConfig, "sha512")
	node.stop(t)
	verifyNoWorkers(t)
}

// TestCapacity: a node with 4 workers runs about 4 times the jobs of a
// node with 1, because each pulls only as many jobs as it has free
// workers. The jobs sleep 60ms, so that the workers, not the CPUs of this
// machine, bound each node's rate.
func TestCapacity(t *testing.T) {
	checkLeaks(t)
	_, url := serverProc(t, t.TempDir(), freePort(t))
	one := nodeProc(t, url, "one", "-type", "sleep", "-workers", "1")
	four := nodeProc(t, url, "four", "-type", "sleep", "-workers", "4")
	nc := connect(t, url)
	p := newProducer(t, nc, clusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 400
	out := (&jobRun{t: t, p: p, n: n, callers: 16, jobType: "sleep",
		payload: func(int) []byte { return []byte("60") },
		check: func(i int, res []byte) error {
			if string(res) != "slept" {
				return errors.New("unexpected result " + string(res))
			}
			return nil
		},
	}).run(ctx)
	perNode, _ := checkOutcomes(t, out)
	ratio := float64(perNode["four"]) / float64(max(1, perNode["one"]))
	t.Logf("jobs:%s; ratio %.2f", summary(perNode), ratio)
	// Equal shares (capacity ignored) give 1; a node that holds more
	// than it can run skews it further. 4 is the target.
	if ratio < 3 || ratio > 5.5 {
		t.Errorf("the 4-worker node ran %.2f times the jobs of the 1-worker node, want about 4 (3 to 5.5)", ratio)
	}
	stopAll(t, one, four)
	verifyNoWorkers(t)
}
