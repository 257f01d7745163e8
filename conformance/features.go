package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// The checks of the protocol's optional features drive the worker over the
// raw protocol, as the host will once it uses them: each runs only when the
// worker announces its feature in ready (a worker may support none; it must
// still accept a hello that offers them).

// FeatureJobTypes are the job types of the contract that serve the optional
// features; a worker that announces the feature must list its job type:
// "meta" needs info, "stream" needs stream.
var FeatureJobTypes = map[codec.Features]string{codec.FeatureMeta: "info", codec.FeatureStream: "stream"}

// sharedSize is the region the feature checks offer a worker that maps one.
const sharedSize = 8 << 20

// startRawFeatures starts the worker with a shared memory region as fd 5
// when w.SharedMemory, sends hello offering every feature (and one this
// suite does not know), and checks ready: the features it answers are
// among those offered, and the job type of each is listed.
func startRawFeatures(t *testing.T, w Worker) (*rawWorker, codec.Message, *sharedmem.Host) {
	t.Helper()
	spec := childproc.Spec{Path: w.Command, Args: w.Args, Dir: w.Dir, Env: w.Env, Name: "conformance"}
	var shm *sharedmem.Host
	if w.SharedMemory {
		f, h, err := sharedmem.Create("conformance", sharedSize)
		if err != nil {
			t.Fatalf("creating the shared memory region: %v", err)
		}
		defer f.Close() // the worker has its copy once started
		shm = h
		t.Cleanup(h.Close)
		spec.ExtraFiles = []*os.File{f}
	}
	p, err := childproc.Start(spec)
	if err != nil {
		t.Fatalf("starting the worker: %v", err)
	}
	rw := newRaw(t, p)
	hello := codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame, Features: codec.AllFeatures | 1<<30}
	if shm != nil {
		hello.SharedSize = uint64(shm.Size())
	}
	rw.send(hello)
	ready := rw.next("ready")
	if ready.Kind != codec.KindReady {
		t.Fatalf("first message %s, want ready", ready.Kind)
	}
	if shm != nil && ready.SharedSize != hello.SharedSize {
		t.Errorf("ready echoes a shared memory size of %d, want %d: the worker should map the region", ready.SharedSize, hello.SharedSize)
	}
	for f, jt := range FeatureJobTypes {
		if ready.Features.Has(f) && !slices.Contains(ready.JobTypes, jt) {
			t.Errorf("the worker announces %q but does not serve %q", f, jt)
		}
	}
	return rw, ready, shm
}

// checkFeatures: a hello that offers features, some unknown, is answered
// with a ready that names only features offered; without an offer, a ready
// names none. Both conversations serve a job.
func checkFeatures(t *testing.T, w Worker) {
	rw, ready, _ := startRawFeatures(t, w)
	t.Logf("the worker supports: %v", ready.Features)
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("f")})
	if got, _, _ := rw.answers(1); string(got[1].Payload) != "f" {
		t.Errorf("echo after a hello with features: %+v", got[1])
	}
	rw.closeInput()
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after the host went away: %s", info)
	}
	old := startRaw(t, w)
	if r := old.handshake(); r.Features != 0 {
		t.Errorf("ready names features %v, but hello offered none", r.Features)
	}
}

// skipUnless skips the check when the worker does not announce f.
func skipUnless(t *testing.T, ready codec.Message, f codec.Features) {
	t.Helper()
	if !ready.Features.Has(f) {
		t.Skipf("the worker does not announce %q", f)
	}
}

// jobInfo is the result of the info job type.
type jobInfo struct {
	ID          uint64
	JobType     string
	Attempt     int
	TraceParent string
	TraceState  string
	Streaming   bool
}

const (
	traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceState  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// checkMeta: the attempt and the trace context of a request reach the
// handler; without them the attempt is 1 and the context empty.
func checkMeta(t *testing.T, w Worker) {
	rw, ready, _ := startRawFeatures(t, w)
	skipUnless(t, ready, codec.FeatureMeta)
	rw.send(codec.Message{Kind: codec.KindRequest, ID: bigID, JobType: "info", Attempt: 3, TraceParent: traceParent, TraceState: traceState,
		PayloadKind: codec.Value})
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "info", PayloadKind: codec.Value})
	got, _, _ := rw.answers(bigID, 2)
	for id, want := range map[uint64]jobInfo{
		bigID: {ID: bigID, JobType: "info", Attempt: 3, TraceParent: traceParent, TraceState: traceState},
		2:     {ID: 2, JobType: "info", Attempt: 1},
	} {
		var info jobInfo
		if m := got[id]; m.ErrCode != "" || msgpack.Unmarshal(m.Payload, &info) != nil || info != want {
			t.Errorf("info of job %d: %+v (%s %s), want %+v", id, info, m.ErrCode, m.ErrMessage, want)
		}
	}
}

// checkBatch: every item of a batch is answered exactly once, alone or in
// a batch response, in its own payload kind, whatever its outcome; an item
// is cancelled on its own, and its timeout is its own; payloads may lie in
// the shared memory region, item by item.
func checkBatch(t *testing.T, w Worker) {
	rw, ready, shm := startRawFeatures(t, w)
	skipUnless(t, ready, codec.FeatureBatch)
	rec := record{Name: "b", Count: 1, Ratio: 1.5, Data: []byte{1, 2}, Tags: []string{"t"}, Big: 1<<64 - 1, Attrs: map[string]int64{}}
	items := []codec.Message{
		{ID: 1, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("one")},
		{ID: 2, JobType: "record", PayloadKind: codec.Value, Payload: mustMarshal(t, rec)},
		{ID: 3, JobType: "no-such-type", PayloadKind: codec.Blob},
		{ID: 4, JobType: "fail", PayloadKind: codec.Blob, Payload: []byte("teapot:short")},
		{ID: 5, JobType: "sleep", PayloadKind: codec.Blob, Payload: []byte("600000")},
		{ID: 6, JobType: "sleep", Timeout: 200 * time.Millisecond, PayloadKind: codec.Blob, Payload: []byte("600000")},
		{ID: bigID, JobType: "echo", PayloadKind: codec.Blob},
	}
	big := map[uint64][]byte{}
	if shm != nil {
		for i := range 3 {
			id := uint64(10 + i)
			p := randomBytes(300<<10, id)
			off, dst, ok := shm.Reserve(id, len(p))
			if !ok {
				t.Fatal("no room in the shared memory region")
			}
			copy(dst, p)
			shm.Copied()
			big[id] = p
			items = append(items, codec.Message{ID: id, JobType: "echo", PayloadKind: codec.Blob, Shared: true,
				Span: codec.Span{Offset: off, Length: uint64(len(p))}})
		}
	}
	ids := []uint64{}
	for i := range items {
		items[i].Kind = codec.KindRequest
		if items[i].ID != 5 {
			ids = append(ids, items[i].ID)
		}
	}
	rw.send(codec.Message{Kind: codec.KindBatchRequest, Items: items})
	got, batches, _ := rw.answersShared(shm, ids...)
	if m := got[1]; m.ErrCode != "" || string(m.Payload) != "one" || m.PayloadKind != codec.Blob {
		t.Errorf("echo in a batch: %+v", m)
	}
	var back record
	if m := got[2]; m.ErrCode != "" || m.PayloadKind != codec.Value || msgpack.Unmarshal(m.Payload, &back) != nil || back.Name != "hello, b" || back.Big != rec.Big {
		t.Errorf("record in a batch: %s %s %+v", m.ErrCode, m.ErrMessage, back)
	}
	if got[3].ErrCode != codec.CodeUnknownJobType {
		t.Errorf("an unknown job type in a batch: %q", got[3].ErrCode)
	}
	if m := got[4]; m.ErrCode != "teapot" || m.ErrMessage != "short" {
		t.Errorf("fail in a batch: %q %q", m.ErrCode, m.ErrMessage)
	}
	if got[6].ErrCode != codec.CodeDeadline {
		t.Errorf("an item with a 200 ms timeout: %q, want %q", got[6].ErrCode, codec.CodeDeadline)
	}
	if m := got[bigID]; m.ErrCode != "" || len(m.Payload) != 0 {
		t.Errorf("an empty echo with id 2^63+12345: %+v", m)
	}
	for id, p := range big {
		if !bytes.Equal(got[id].Payload, p) {
			t.Errorf("a 300 KiB echo through the shared region in a batch: %d bytes back, not the same", len(got[id].Payload))
		}
	}
	rw.send(codec.Message{Kind: codec.KindCancel, ID: 5})
	if got, _, _ := rw.answers(5); got[5].ErrCode != codec.CodeCancelled {
		t.Errorf("a cancelled item: %q, want %q", got[5].ErrCode, codec.CodeCancelled)
	}
	t.Logf("%d answers, %d batch responses", len(ids)+1, batches)

	// A full batch of small jobs.
	many := make([]codec.Message, codec.MaxBatch)
	ids = ids[:0]
	for i := range many {
		many[i] = codec.Message{Kind: codec.KindRequest, ID: uint64(1000 + i), JobType: "echo", PayloadKind: codec.Blob, Payload: []byte(fmt.Sprint(i))}
		ids = append(ids, uint64(1000+i))
	}
	rw.send(codec.Message{Kind: codec.KindBatchRequest, Items: many})
	got, batches, _ = rw.answers(ids...)
	for i, id := range ids {
		if string(got[id].Payload) != fmt.Sprint(i) {
			t.Fatalf("job %d of a batch of %d: %q", i, codec.MaxBatch, got[id].Payload)
		}
	}
	t.Logf("%d answers to a full batch in %d batch responses", len(ids), batches)
	rw.closeInput()
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after the host went away: %s", info)
	}
}

// checkStream: a streamed job sends no more chunks than its credit allows,
// goes on as credit is granted, and ends with one response; a cancel stops
// it mid-stream and no chunk follows its response; a job that was not
// streamed sends none; large chunks may cross the shared region.
func checkStream(t *testing.T, w Worker) {
	rw, ready, shm := startRawFeatures(t, w)
	skipUnless(t, ready, codec.FeatureStream)
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "stream", Credit: 2, PayloadKind: codec.Blob, Payload: []byte("5:100")})
	chunks := rw.chunks(1, 2, shm)
	rw.quiet(300*time.Millisecond, "a chunk beyond the credit of 2")
	rw.send(codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 2})
	chunks = append(chunks, rw.chunks(1, 2, shm)...)
	rw.quiet(300*time.Millisecond, "a chunk beyond the credit of 4")
	rw.send(codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 100})
	chunks = append(chunks, rw.chunks(1, 1, shm)...)
	for i, c := range chunks {
		if !bytes.Equal(c, bytes.Repeat([]byte{byte(i)}, 100)) {
			t.Errorf("chunk %d: %d bytes of %v", i, len(c), c[:min(len(c), 4)])
		}
	}
	if got, _, _ := rw.answers(1); string(got[1].Payload) != "done:5" {
		t.Errorf("the stream's response: %q %q %q", got[1].ErrCode, got[1].ErrMessage, got[1].Payload)
	}

	// Cancelled mid-stream, waiting for credit.
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "stream", Credit: 1, PayloadKind: codec.Blob, Payload: []byte("1000:10")})
	rw.chunks(2, 1, shm)
	rw.send(codec.Message{Kind: codec.KindCancel, ID: 2})
	if got, _, _ := rw.answers(2); got[2].ErrCode != codec.CodeCancelled {
		t.Errorf("a stream cancelled: %q, want %q", got[2].ErrCode, codec.CodeCancelled)
	}
	rw.send(codec.Message{Kind: codec.KindCredit, ID: 2, Credit: 5}) // crossed the response: ignored
	rw.quiet(200*time.Millisecond, "a chunk after the response")

	// Not streamed: no chunk, an error (the handler cannot send).
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "stream", PayloadKind: codec.Blob, Payload: []byte("1:1")})
	if got, _, _ := rw.answers(3); got[3].ErrCode == "" {
		t.Errorf("a stream the host did not ask for answered %q", got[3].Payload)
	}
	if shm != nil {
		rw.send(codec.Message{Kind: codec.KindRequest, ID: 4, JobType: "stream", Credit: 3, PayloadKind: codec.Blob, Payload: []byte("3:300000")})
		for i, c := range rw.chunks(4, 3, shm) {
			if !bytes.Equal(c, bytes.Repeat([]byte{byte(i)}, 300000)) {
				t.Errorf("large chunk %d differs", i)
			}
		}
		rw.answers(4)
	}
	rw.closeInput()
	rw.exit(nil)
}

// checkPanicAnswer: a crash's answer has a one-line message starting
// "panic: " with the crash's text; its payload, a blob, may carry the
// details (a stack trace).
func checkPanicAnswer(t *testing.T, w Worker) {
	rw := startRaw(t, w)
	rw.handshake()
	rw.send(codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "crash", PayloadKind: codec.Blob, Payload: []byte("fell over")})
	got, _, _ := rw.answers(1)
	m := got[1]
	if m.ErrCode != codec.CodePanic || !strings.HasPrefix(m.ErrMessage, "panic: ") || !strings.Contains(m.ErrMessage, "fell over") || strings.Contains(m.ErrMessage, "\n") {
		t.Errorf("a crash answered %q %q, want code panic and one line \"panic: ...fell over...\"", m.ErrCode, m.ErrMessage)
	}
	if m.PayloadKind != codec.Blob || m.Shared {
		t.Errorf("a crash's detail is a blob in the frame, not %s (shared %v)", m.PayloadKind, m.Shared)
	}
	if info := rw.exit(nil); info.Success() {
		t.Errorf("exit after a crash: %s, want non-zero", info)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRaw drives the started process p over the protocol.
func newRaw(t *testing.T, p *childproc.Process) *rawWorker {
	rw := &rawWorker{t: t, proc: p, w: codec.NewWriter(p.Input(), 0), msgs: make(chan codec.Message, 4096), rerr: make(chan error, 1), in: true}
	t.Cleanup(func() {
		_ = p.Kill()
		<-p.Done()
	})
	go func() {
		rd := codec.NewReader(bufio.NewReader(p.Output()), 0)
		for {
			var m codec.Message
			if err := rd.Read(&m); err != nil {
				rw.rerr <- err
				close(rw.msgs)
				return
			}
			m.Payload = bytes.Clone(m.Payload)
			m.JobTypes = slices.Clone(m.JobTypes)
			for i := range m.Items {
				m.Items[i].Payload = bytes.Clone(m.Items[i].Payload)
			}
			rw.msgs <- m
		}
	}()
	return rw
}
