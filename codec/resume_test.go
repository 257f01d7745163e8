package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// choppy returns at most 3 bytes per read and a timeout error after every
// read that returned data.
type choppy struct {
	r       *bytes.Reader
	timeout bool
}

func (c *choppy) Read(p []byte) (int, error) {
	if c.timeout {
		c.timeout = false
		return 0, timeoutErr{}
	}
	c.timeout = true
	return c.r.Read(p[:min(len(p), 3)])
}

// TestReadResumesAfterTimeout: a timed-out Read loses no byte; the next
// Read continues the frame.
func TestReadResumesAfterTimeout(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	want := []Message{
		{Kind: KindRequest, ID: 1, JobType: "echo", Payload: bytes.Repeat([]byte("ab"), 100)},
		{Kind: KindPing, ID: 2},
		{Kind: KindResponse, ID: 3, ErrCode: "handler", ErrMessage: "no"},
	}
	for i := range want {
		require.NoError(t, w.Write(&want[i]))
	}
	r := NewReader(&choppy{r: bytes.NewReader(buf.Bytes())}, 0)
	var m Message
	timeouts := 0
	for i := range want {
		for {
			err := r.Read(&m)
			if errors.Is(err, timeoutErr{}) {
				timeouts++
				continue
			}
			require.NoError(t, err)
			break
		}
		require.Equal(t, want[i].ID, m.ID)
		require.Equal(t, want[i].Kind, m.Kind)
		require.Equal(t, string(want[i].Payload), string(m.Payload))
		require.Equal(t, want[i].ErrMessage, m.ErrMessage)
	}
	require.Greater(t, timeouts, 50)
}

// TestSetAllocProvidesLargeFrames: frames over 256 KiB are read into the
// buffers SetAlloc supplies; smaller ones still share the Reader's buffer.
func TestSetAllocProvidesLargeFrames(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	big := bytes.Repeat([]byte{7}, 300<<10)
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 1, JobType: "x", Payload: big}))
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 2, JobType: "x", Payload: []byte("small")}))
	r := NewReader(&buf, 0)
	var given [][]byte
	r.SetAlloc(func(n int) []byte {
		b := make([]byte, n, n+100)
		given = append(given, b)
		return b
	})
	var m Message
	require.NoError(t, r.Read(&m))
	require.True(t, r.Owned())
	require.Len(t, given, 1)
	require.Equal(t, big, m.Payload)
	require.Same(t, &given[0][:cap(given[0])][len(given[0])-len(big)], &m.Payload[0], "the payload lies in the supplied buffer")
	require.NoError(t, r.Read(&m))
	require.False(t, r.Owned())
	require.Len(t, given, 1, "small frames do not call alloc")
}

// TestSetAllocAboveLowersTheThreshold: with SetAllocAbove, frames past the
// given size are read into supplied buffers, and smaller ones still share
// the Reader's.
func TestSetAllocAboveLowersTheThreshold(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	mid := bytes.Repeat([]byte{7}, 20<<10)
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 1, JobType: "x", Payload: mid}))
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 2, JobType: "x", Payload: []byte("small")}))
	r := NewReader(&buf, 0)
	calls := 0
	r.SetAllocAbove(16<<10, func(n int) []byte { calls++; return make([]byte, n) })
	var m Message
	require.NoError(t, r.Read(&m))
	require.True(t, r.Owned(), "a 20 KiB frame past a 16 KiB threshold")
	require.Equal(t, mid, m.Payload)
	require.NoError(t, r.Read(&m))
	require.False(t, r.Owned())
	require.Equal(t, 1, calls, "small frames do not call alloc")
}
