package conformance

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
)

// Worker is the worker command under test.
type Worker struct {
	// Command is the program to start (an absolute path, or a name looked
	// up in PATH); Args its arguments.
	Command string
	Args    []string
	// Dir is its working directory; empty means the test's.
	Dir string
	// Env is its whole environment (KEY=VALUE), as in procpool.JobType.
	Env []string
	// SharedMemory says that the SDK maps the shared memory region the host
	// offers on fd 5: then payloads of 64 KiB and more must cross through
	// it (Stats.SharedRequests and Stats.SharedResults grow). When false,
	// the worker must decline the region, and they must stay 0.
	SharedMemory bool
}

// JobTypes are the job types of the contract, which the worker's ready
// must list.
var JobTypes = []string{"echo", "sha512", "sha512v", "record", "sleep", "spin", "fail", "crash", "grow"}

// Run runs every check of the suite against w, each as a subtest of t.
func Run(t *testing.T, w Worker) {
	t.Helper()
	if w.Command == "" {
		t.Fatal("conformance: Worker.Command is empty")
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			// Registered first, so it runs last: after the host's shutdown.
			t.Cleanup(func() { proctest.VerifyNone(t) })
			c.run(t, w)
		})
	}
}

// checks are the suite's checks, in the order they run.
var checks = []struct {
	name string
	run  func(*testing.T, Worker)
}{
	{"Handshake", checkHandshake},
	{"Echo", checkEcho},
	{"SHA512", checkSHA512},
	{"Value", checkValue},
	{"ErrorCode", checkErrorCode},
	{"TooLarge", checkTooLarge},
	{"Cancel", checkCancel},
	{"Deadline", checkDeadline},
	{"Crash", checkCrash},
	{"Concurrent", checkConcurrent},
	{"Heartbeats", checkHeartbeats},
	{"SharedMemory", checkSharedMemory},
	{"Shutdown", checkShutdown},
	{"ShutdownDrains", checkShutdownDrains},
	{"ShutdownThenEOF", checkShutdownThenEOF},
	{"HostGone", checkHostGone},
	{"PanicAnswer", checkPanicAnswer},
	{"Features", checkFeatures},
	{"Meta", checkMeta},
	{"Batch", checkBatch},
	{"SharedItems", checkSharedItems},
	{"Stream", checkStream},
}

// callTimeout bounds every call of the suite: generous, for a loaded
// machine, and still far below a stuck job's minute.
const callTimeout = 30 * time.Second

// host is one procpool.System running the worker under test, with its
// logs and supervision events recorded.
type host struct {
	t    *testing.T
	w    Worker
	sys  *procpool.System
	logs *syncBuffer
	sub  *eventstream.Subscription

	mu     sync.Mutex
	events []*procpool.WorkerEvent
}

// newHost starts a system; it is shut down, and the absence of leftover
// processes checked, when the test ends.
func newHost(t *testing.T, w Worker) *host {
	h := &host{t: t, w: w, logs: &syncBuffer{}}
	logger := hclog.New(&hclog.LoggerOptions{Name: "conformance", Level: hclog.Warn, Output: h.logs})
	h.sys = procpool.NewSystem(procpool.Config{Logger: logger})
	h.sub = h.sys.ActorSystem().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*procpool.WorkerEvent); ok {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.sys.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		h.sys.ActorSystem().EventStream.Unsubscribe(h.sub)
		if t.Failed() {
			t.Logf("host and worker log:\n%s", h.logs.String())
		}
	})
	return h
}

// spawn starts the pool of one job type, one worker unless adjust says
// otherwise, and waits until its workers are ready.
func (h *host) spawn(name string, adjust func(*procpool.JobType)) *procpool.Router {
	h.t.Helper()
	jt := procpool.JobType{
		Name: name, Command: h.w.Command, Args: h.w.Args, Dir: h.w.Dir, Env: h.w.Env,
		MinWorkers: 1, MaxWorkers: 1, IdleTimeout: -1,
	}
	if adjust != nil {
		adjust(&jt)
	}
	r, err := h.sys.Spawn(jt)
	if err != nil {
		h.t.Fatalf("Spawn %s: %v", name, err)
	}
	h.waitReady(r, jt.MinWorkers)
	return r
}

// waitReady waits until n workers of r are ready.
func (h *host) waitReady(r *procpool.Router, n int) {
	h.t.Helper()
	var st *procpool.Stats
	if !proctest.WaitFor(callTimeout, func() bool {
		st = h.stats(r)
		return st.Idle+st.Busy >= n
	}) {
		h.t.Fatalf("%d of %d workers ready after %v (stats %+v)", st.Idle+st.Busy, n, callTimeout, *st)
	}
}

func (h *host) stats(r *procpool.Router) *procpool.Stats {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := r.Stats(ctx)
	if err != nil {
		h.t.Fatalf("Stats: %v", err)
	}
	return st
}

// call runs one BLOB job with callTimeout.
func (h *host) call(r *procpool.Router, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return r.Call(ctx, procpool.Blob, payload)
}

// mustCall runs one BLOB job and fails the test if it fails.
func (h *host) mustCall(r *procpool.Router, payload []byte) []byte {
	h.t.Helper()
	res, err := h.call(r, payload)
	if err != nil {
		h.t.Fatalf("%s job: %v", jobTypeOf(r), err)
	}
	return res
}

// readyPIDs returns the pids of the workers of jobType that became ready,
// in order.
func (h *host) readyPIDs(jobType string) []int {
	return h.pids(jobType, actors.EventReady)
}

func (h *host) pids(jobType string, kind actors.EventKind) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var pids []int
	for _, e := range h.events {
		if e.JobType == jobType && e.Kind == kind {
			pids = append(pids, e.PID)
		}
	}
	return pids
}

// event waits for an event of jobType and kind for which ok is true.
func (h *host) event(jobType string, kind actors.EventKind, ok func(*procpool.WorkerEvent) bool) *procpool.WorkerEvent {
	var found *procpool.WorkerEvent
	proctest.WaitFor(callTimeout, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.events {
			if e.JobType == jobType && e.Kind == kind && (ok == nil || ok(e)) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// sameWorker fails the test unless r's job type still runs on its first
// worker: one spawn, no crash.
func (h *host) sameWorker(r *procpool.Router) {
	h.t.Helper()
	st := h.stats(r)
	if st.Spawns != 1 || st.Crashes != 0 {
		h.t.Errorf("%s: %d spawns and %d crashes, want the first worker still serving (events %v)",
			st.JobType, st.Spawns, st.Crashes, h.eventList(st.JobType))
	}
}

func (h *host) eventList(jobType string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		if e.JobType == jobType {
			out = append(out, e.String())
		}
	}
	return out
}

func jobTypeOf(r *procpool.Router) string {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if st, err := r.Stats(ctx); err == nil {
		return st.JobType
	}
	return "?"
}

// Grown returns what the grow job type answers for n: n bytes, byte i
// being i mod 251.
func Grown(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	const max = 64 << 10
	if s.b.Len() > max {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", s.b.Len()-max, s.b.Bytes()[s.b.Len()-max:])
	}
	return s.b.String()
}
