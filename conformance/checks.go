package conformance

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// checkEcho: payloads of every size come back byte-exact, from the empty
// one to 20 MiB (in frames below 64 KiB, through the shared region from 64
// KiB, and in frames again above the region's half).
func checkEcho(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("echo", nil)
	for i, n := range []int{0, 1, 1 << 10, 100 << 10, 1 << 20, 20 << 20} {
		in := randomBytes(n, uint64(i+1))
		out := h.mustCall(r, in)
		if !bytes.Equal(out, in) {
			t.Errorf("echo of %d bytes: got %d bytes back, first difference at %d", n, len(out), firstDiff(out, in))
		}
	}
	h.sameWorker(r)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkSHA512: the worker's digests equal Go's, for blobs and for the
// buffer sha512v makes from a VALUE; a negative size is the worker's own
// error code.
func checkSHA512(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("sha512", nil)
	for i, n := range []int{0, 1 << 10, 1 << 20} {
		in := randomBytes(n, uint64(100+i))
		want := sha512.Sum512(in)
		if got := h.mustCall(r, in); !bytes.Equal(got, want[:]) {
			t.Errorf("sha512 of %d bytes: %x, want %x", n, got, want)
		}
	}
	v := h.spawn("sha512v", nil)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	for _, g := range []generate{{0, 0}, {1 << 10, 7}, {1 << 20, 255}, {100003, 13}} {
		buf := make([]byte, g.Size)
		for i := range buf {
			buf[i] = g.Seed + byte(i)
		}
		want := sha512.Sum512(buf)
		got, err := procpool.CallValue[[]byte](ctx, v, g)
		if err != nil {
			t.Fatalf("sha512v %+v: %v", g, err)
		}
		if !bytes.Equal(got, want[:]) {
			t.Errorf("sha512v %+v: %x, want %x", g, got, want)
		}
	}
	_, err := procpool.CallValue[[]byte](ctx, v, generate{Size: -1})
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != "bad_size" {
		t.Errorf("sha512v with Size -1: %v, want a *RemoteError with code bad_size", err)
	}
	h.sameWorker(v)
}

type generate struct {
	Size int
	Seed byte
}

// record is the argument and result of the record job type.
type record struct {
	Name  string
	Count int64
	Ratio float64
	Floor float64
	Data  []byte
	Tags  []string
	Flag  bool
	Big   uint64
	Attrs map[string]int64
}

// checkValue: a Go struct goes in and comes out through CallValue, every
// field type intact: strings, integers, floats (an integer accepted for a
// float field), bytes, lists, booleans, 64-bit unsigned integers, maps.
func checkValue(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("record", nil)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	for _, in := range []record{
		{Name: "wörld", Count: -5, Ratio: 2.75, Data: []byte{1, 2, 3, 0, 255}, Tags: []string{"a", "b"}, Flag: true,
			Big: 1<<64 - 1, Attrs: map[string]int64{"x": 1 << 40}},
		{Name: "", Count: 1 << 53, Ratio: -0.5, Data: []byte{}, Tags: []string{}, Big: 1<<53 + 1, Attrs: map[string]int64{}},
	} {
		got, err := procpool.CallValue[record](ctx, r, in)
		if err != nil {
			t.Fatalf("record %+v: %v", in, err)
		}
		data := bytes.Clone(in.Data)
		for i, j := 0, len(data)-1; i < j; i, j = i+1, j-1 {
			data[i], data[j] = data[j], data[i]
		}
		want := record{
			Name: "hello, " + in.Name, Count: in.Count + 1, Ratio: in.Ratio * 2, Floor: floor(in.Ratio),
			Data: data, Tags: append(append([]string{}, in.Tags...), "seen"), Flag: !in.Flag, Big: in.Big,
			Attrs: map[string]int64{"tags": int64(len(in.Tags))},
		}
		for k, v := range in.Attrs {
			want.Attrs[k] = v
		}
		if fmt.Sprintf("%#v", normal(got)) != fmt.Sprintf("%#v", normal(want)) {
			t.Errorf("record:\n got %#v\nwant %#v", got, want)
		}
	}
	h.sameWorker(r)
}

func floor(x float64) float64 {
	f := float64(int64(x))
	if f > x {
		f--
	}
	return f
}

// normal makes empty and nil slices alike, for comparison.
func normal(r record) record {
	if len(r.Data) == 0 {
		r.Data = nil
	}
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	return r
}

// checkErrorCode: a handler's error code and message arrive in a
// *RemoteError, and the worker goes on.
func checkErrorCode(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("fail", nil)
	_, err := h.call(r, []byte("teapot:short and stout"))
	var re *procpool.RemoteError
	if !errors.As(err, &re) || !errors.Is(err, procpool.ErrRemote) {
		t.Fatalf("fail: %v, want a *RemoteError", err)
	}
	if re.Code != "teapot" || re.Message != "short and stout" {
		t.Errorf("fail: code %q message %q, want teapot and \"short and stout\"", re.Code, re.Message)
	}
	h.sameWorker(r)
}

// checkTooLarge: a result larger than the host's frame limit is answered
// too_large, and the worker goes on; a result just within it arrives.
func checkTooLarge(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("grow", func(jt *procpool.JobType) { jt.MaxFrame = 1 << 20 })
	_, err := h.call(r, []byte(strconv.Itoa(2<<20)))
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != "too_large" {
		t.Errorf("grow 2 MiB with a 1 MiB frame limit: %v, want a *RemoteError with code too_large", err)
	}
	for _, n := range []int{10, 512 << 10, 1<<20 - 4<<10} {
		if got := h.mustCall(r, []byte(strconv.Itoa(n))); !bytes.Equal(got, Grown(n)) {
			t.Errorf("grow %d: %d bytes, not the pattern", n, len(got))
		}
	}
	h.sameWorker(r)
}

// checkCancel: cancelling a running job returns ErrCancelled at once, the
// worker stops the handler (the next job gets the only slot) and stays.
func checkCancel(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("sleep", nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.Call(ctx, procpool.Blob, []byte("60000"))
	if !errors.Is(err, procpool.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled sleep: %v, want ErrCancelled and context.Canceled", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancelled sleep took %v to return", d)
	}
	// One worker, one slot: the next job runs only once the worker has
	// answered the cancelled one, long before its minute is up.
	if got := h.mustCall(r, []byte("1")); string(got) != "1" {
		t.Errorf("sleep 1 after the cancel: %q", got)
	}
	st := h.stats(r)
	if st.Cancelled != 1 || st.Succeeded != 1 {
		t.Errorf("stats: %d cancelled, %d succeeded; want 1 and 1", st.Cancelled, st.Succeeded)
	}
	h.sameWorker(r)
}

// checkDeadline: a job that overruns JobTimeout fails with ErrJobTimeout;
// the worker stops it at the request's timeoutMs, well before the host
// would kill it, and stays.
func checkDeadline(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("sleep", func(jt *procpool.JobType) {
		jt.JobTimeout = 500 * time.Millisecond
		jt.CancelGrace = 20 * time.Second
	})
	_, err := h.call(r, []byte("60000"))
	if !errors.Is(err, procpool.ErrJobTimeout) {
		t.Fatalf("sleep 60 s with a 500 ms timeout: %v, want ErrJobTimeout", err)
	}
	if got := h.mustCall(r, []byte("1")); string(got) != "1" {
		t.Errorf("sleep 1 after the timeout: %q", got)
	}
	h.sameWorker(r)
}

// checkCrash: an uncaught exception (a panic) is answered code panic with
// its message, the worker exits non-zero by itself, and a replacement
// serves the next job.
func checkCrash(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("crash", nil)
	first := h.readyPIDs("crash")
	_, err := h.call(r, []byte("the handler fell over"))
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != "panic" {
		t.Fatalf("crash: %v, want a *RemoteError with code panic", err)
	}
	if !bytes.Contains([]byte(re.Message), []byte("the handler fell over")) {
		t.Errorf("crash: message %q lacks the exception's text", re.Message)
	}
	e := h.event("crash", actors.EventCrashed, nil)
	switch {
	case e == nil:
		t.Fatalf("no crash event after the panic (events %v)", h.eventList("crash"))
	case e.PID != first[0]:
		t.Errorf("crash event for pid %d, want %d", e.PID, first[0])
	case e.Failure == nil || e.Failure.Signal != 0 || e.Failure.ExitCode == 0:
		t.Errorf("crash event %v: want an exit by the worker itself with a non-zero code", e)
	}
	// The replacement serves the next job; "crash" with an empty text is
	// still a crash, so check liveness through Stats and events.
	if !proctest.WaitFor(callTimeout, func() bool { return len(h.readyPIDs("crash")) >= 2 }) {
		t.Fatalf("no replacement ready (events %v)", h.eventList("crash"))
	}
	if pids := h.readyPIDs("crash"); pids[1] == pids[0] {
		t.Errorf("replacement has the pid %d of the crashed worker", pids[0])
	}
	if proctest.Alive(first[0]) {
		t.Errorf("crashed worker %s is still alive", proctest.Describe(first[0]))
	}
}

// checkConcurrent: 2,000 jobs at once over a pool of 2 with 8 in flight
// per worker; slow and fast jobs mixed, so that answers come out of order;
// every caller gets its own answer.
func checkConcurrent(t *testing.T, w Worker) {
	h := newHost(t, w)
	const jobs = 2000
	r := h.spawn("echo", func(jt *procpool.JobType) { jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 2, 2, 8 })
	s := h.spawn("sleep", func(jt *procpool.JobType) { jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 2, 2, 8 })
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 0 {
				ms := []byte(strconv.Itoa(1 + i%7))
				if got, err := h.call(s, ms); err != nil || !bytes.Equal(got, ms) {
					errs <- fmt.Errorf("sleep job %d: %q, %v", i, got, err)
				}
				return
			}
			in := randomBytes(16+i%200, uint64(i))
			if got, err := h.call(r, in); err != nil || !bytes.Equal(got, in) {
				errs <- fmt.Errorf("echo job %d: %d bytes, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 5 {
		t.Errorf("... and %d more failed jobs", n-5)
	}
	if st := h.stats(r); st.Succeeded+h.stats(s).Succeeded != jobs || st.Crashes != 0 {
		t.Errorf("echo stats %+v", *st)
	}
}

// checkHeartbeats: a worker pinged every 100 ms (and killed after 500 ms
// of silence) stays alive while idle for several timeouts, and while a
// CPU-bound handler runs for four.
func checkHeartbeats(t *testing.T, w Worker) {
	h := newHost(t, w)
	hb := func(jt *procpool.JobType) {
		jt.HeartbeatInterval = 100 * time.Millisecond
		jt.HeartbeatTimeout = 500 * time.Millisecond
	}
	r := h.spawn("spin", hb)
	time.Sleep(3 * time.Second)
	if got := h.mustCall(r, []byte("2000")); string(got) != "2000" {
		t.Errorf("spin: %q", got)
	}
	time.Sleep(time.Second)
	h.sameWorker(r)
}

// checkSharedMemory: payloads of 64 KiB and more cross through the shared
// memory region both ways when the SDK maps it, and never when it does not.
func checkSharedMemory(t *testing.T, w Worker) {
	h := newHost(t, w)
	r := h.spawn("echo", nil)
	in := randomBytes(1<<20, 42)
	for range 3 {
		if got := h.mustCall(r, in); !bytes.Equal(got, in) {
			t.Fatalf("echo of 1 MiB: wrong bytes back")
		}
	}
	g := h.spawn("grow", nil)
	if got := h.mustCall(g, []byte(strconv.Itoa(300<<10))); !bytes.Equal(got, Grown(300<<10)) {
		t.Fatalf("grow 300 KiB: wrong bytes")
	}
	st, gs := h.stats(r), h.stats(g)
	if w.SharedMemory {
		if st.SharedRequests != 3 || st.SharedResults != 3 || gs.SharedResults != 1 {
			t.Errorf("shared requests/results: echo %d/%d (want 3/3), grow results %d (want 1)",
				st.SharedRequests, st.SharedResults, gs.SharedResults)
		}
	} else if st.SharedRequests+st.SharedResults+gs.SharedResults != 0 {
		t.Errorf("the worker declines shared memory, yet %d/%d payloads crossed through it", st.SharedRequests, st.SharedResults)
	}
}

// checkShutdown: Shutdown ends every worker (exit status: see
// ShutdownDrains) and leaves no process.
func checkShutdown(t *testing.T, w Worker) {
	h := newHost(t, w)
	// A stop's grace longer than Shutdown's context: a worker that does not
	// exit on its own makes Shutdown fail instead of being signalled.
	r := h.spawn("echo", func(jt *procpool.JobType) { jt.MinWorkers, jt.MaxWorkers, jt.StopGrace = 2, 2, 5*time.Minute })
	h.mustCall(r, []byte("x"))
	pids := h.readyPIDs("echo")
	if len(pids) != 2 {
		t.Fatalf("ready pids %v, want 2", pids)
	}
	h.sameWorkerCount(r, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.sys.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (the workers did not exit on their own)", err)
	}
	for _, pid := range pids {
		if proctest.Alive(pid) {
			t.Errorf("worker %s outlived Shutdown", proctest.Describe(pid))
		}
	}
	if n := len(h.pids("echo", actors.EventCrashed)); n != 0 {
		t.Errorf("%d crash events during Shutdown: %v", n, h.eventList("echo"))
	}
}

func (h *host) sameWorkerCount(r *procpool.Router, n int) {
	h.t.Helper()
	st := h.stats(r)
	if int(st.Spawns) != n || st.Crashes != 0 {
		h.t.Errorf("%s: %d spawns and %d crashes, want %d and 0", st.JobType, st.Spawns, st.Crashes, n)
	}
}
