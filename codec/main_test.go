package codec

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// frame prepends the 4-byte big-endian length to body.
func frame(body []byte) []byte {
	out := make([]byte, HeaderSize+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	copy(out[HeaderSize:], body)
	return out
}

// encodeFrame writes m with a fresh Writer and returns the whole frame.
func encodeFrame(t testing.TB, m *Message, maxFrame int) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf, maxFrame).Write(m))
	return buf.Bytes()
}

// pipeRoundTrip writes m on one end of an io.Pipe from a goroutine and reads
// it on the other, so that a large payload is never held twice by the
// transport. It returns the message read and whether its buffer is owned.
func pipeRoundTrip(t testing.TB, m *Message, maxFrame int) (Message, bool) {
	t.Helper()
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := NewWriter(pw, maxFrame).Write(m)
		_ = pw.CloseWithError(err)
		werr <- err
	}()
	r := NewReader(pr, maxFrame)
	var got Message
	rerr := r.Read(&got)
	owned := r.Owned()
	if rerr == nil {
		var extra Message
		require.ErrorIs(t, r.Read(&extra), io.EOF, "one frame, then a clean end")
	}
	_ = pr.Close()
	require.NoError(t, <-werr)
	require.NoError(t, rerr)
	return got, owned
}

// normalize makes two messages comparable whatever the nil-ness of their
// empty slices.
func normalize(m Message) Message {
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	if len(m.JobTypes) == 0 {
		m.JobTypes = nil
	}
	if m.Attempt == 1 {
		m.Attempt = 0 // the first attempt, said or not
	}
	if len(m.Items) == 0 {
		m.Items = nil
	} else {
		items := make([]Message, len(m.Items))
		for i := range m.Items {
			items[i] = normalize(m.Items[i])
		}
		m.Items = items
	}
	return m
}

// runtimeMem samples the bytes allocated so far.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
