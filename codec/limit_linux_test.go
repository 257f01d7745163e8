package codec

import (
	"math"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriterLimitBeyondHeader(t *testing.T) {
	if math.MaxInt == math.MaxInt32 {
		t.Skip("needs 64-bit ints")
	}
	// A limit above what the 4-byte header can say must not let the length
	// wrap around. Only the payload's length is looked at before the Writer
	// refuses, so a 4 GiB anonymous mapping, never touched and so never
	// backed by memory, stands in for a real payload.
	payload, err := syscall.Mmap(-1, 0, math.MaxUint32, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		t.Skipf("cannot map 4 GiB of address space: %v", err)
	}
	defer func() { require.NoError(t, syscall.Munmap(payload)) }()
	var c countingWriter
	w := NewWriter(&c, math.MaxInt)
	err = w.Write(&Message{Kind: KindResponse, ID: 1, PayloadKind: Blob, Payload: payload})
	require.ErrorIs(t, err, ErrFrameTooLarge)
	assert.Zero(t, c.calls)
}
