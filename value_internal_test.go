package procpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeValueTakesExactlyOneValue(t *testing.T) {
	one, err := msgpack.Marshal(7)
	require.NoError(t, err)
	n, err := decodeValue[int](one)
	require.NoError(t, err)
	assert.Equal(t, 7, n)

	_, err = decodeValue[int](append(one, one...))
	assert.ErrorIs(t, err, ErrBadResult, "two values")
	_, err = decodeValue[int](nil)
	assert.ErrorIs(t, err, ErrBadResult, "no value")
	_, err = decodeValue[int]([]byte{0xa1, 'x'}) // a string
	assert.ErrorIs(t, err, ErrBadResult, "a value of another type")
}
