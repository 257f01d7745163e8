package codec_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool/codec"
)

// protocolExamples are the frames whose hex dumps docs/protocol.md shows; a
// test checks that the document still matches them byte for byte.
func protocolExamples() []struct {
	Name string
	Msg  codec.Message
} {
	return []struct {
		Name string
		Msg  codec.Message
	}{
		{"hello", codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame}},
		{"ready", codec.Message{Kind: codec.KindReady, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame,
			PID: 4242, JobTypes: []string{"echo"}}},
		{"request", codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", Timeout: 5 * time.Second,
			PayloadKind: codec.Blob, Payload: []byte("hello")}},
		{"response", codec.Message{Kind: codec.KindResponse, ID: 1, PayloadKind: codec.Blob, Payload: []byte("hello")}},
		{"shared request", codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "echo", Timeout: 5 * time.Second,
			PayloadKind: codec.Blob, Shared: true, Span: codec.Span{Offset: 4096, Length: 1 << 20}}},
	}
}

// A Writer turns each message into one frame: a 4-byte big-endian length,
// then one msgpack array. These are the frames docs/protocol.md shows.
func ExampleWriter() {
	var buf bytes.Buffer
	w := codec.NewWriter(&buf, 0)
	for _, ex := range protocolExamples() {
		buf.Reset()
		if err := w.Write(&ex.Msg); err != nil {
			panic(err)
		}
		fmt.Printf("%s:\n%s", ex.Name, hex.Dump(buf.Bytes()))
	}
	// Output:
	// hello:
	// 00000000  00 00 00 08 93 01 01 ce  04 00 00 00              |............|
	// ready:
	// 00000000  00 00 00 11 95 02 01 ce  04 00 00 00 cd 10 92 91  |................|
	// 00000010  a4 65 63 68 6f                                    |.echo|
	// request:
	// 00000000  00 00 00 13 96 03 01 a4  65 63 68 6f cd 13 88 00  |........echo....|
	// 00000010  c4 05 68 65 6c 6c 6f                              |..hello|
	// response:
	// 00000000  00 00 00 0d 96 04 01 a0  a0 00 c4 05 68 65 6c 6c  |............hell|
	// 00000010  6f                                                |o|
	// shared request:
	// 00000000  00 00 00 15 96 03 02 a4  65 63 68 6f cd 13 88 02  |........echo....|
	// 00000010  92 cd 10 00 ce 00 10 00  00                       |.........|
}

// A Writer refuses, writing nothing, a frame larger than its peer accepts.
func ExampleWriter_SetMaxFrame() {
	var buf bytes.Buffer
	w := codec.NewWriter(&buf, 0)
	w.SetMaxFrame(16) // the limit the peer announced in Hello or Ready
	err := w.Write(&codec.Message{Kind: codec.KindResponse, ID: 1, PayloadKind: codec.Blob, Payload: make([]byte, 32)})
	fmt.Println(errors.Is(err, codec.ErrFrameTooLarge), buf.Len())
	// Output: true 0
}

// A Reader reads frames until the stream ends cleanly with io.EOF. One
// Message can be reused for every read.
func ExampleReader() {
	var stream bytes.Buffer
	w := codec.NewWriter(&stream, 0)
	_ = w.Write(&codec.Message{Kind: codec.KindRequest, ID: 7, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("hi")})
	_ = w.Write(&codec.Message{Kind: codec.KindPing, ID: 1})
	_ = w.Write(&codec.Message{Kind: codec.KindShutdown, Grace: 2 * time.Second})

	r := codec.NewReader(&stream, 1<<20)
	var m codec.Message
	for {
		err := r.Read(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			// ErrTruncated, ErrFrameTooLarge or ErrMalformed: the stream
			// cannot be trusted any more.
			panic(err)
		}
		switch m.Kind {
		case codec.KindRequest:
			// m.Payload aliases the Reader's buffer: copy it to keep it
			// beyond the next Read, unless r.Owned() says it is ours.
			fmt.Printf("request %d %q %s %q owned=%v\n", m.ID, m.JobType, m.PayloadKind, m.Payload, r.Owned())
		case codec.KindPing:
			fmt.Printf("ping %d\n", m.ID)
		case codec.KindShutdown:
			fmt.Printf("shutdown grace=%s\n", m.Grace)
		}
	}
	// Output:
	// request 7 "echo" blob "hi" owned=false
	// ping 1
	// shutdown grace=2s
}

// Decode reads a frame body already in memory, and reports what is not a
// valid message as ErrMalformed.
func ExampleDecode() {
	body := []byte{0x92, 0x07, 0x2a} // [7, 42]: a pong
	var m codec.Message
	if err := codec.Decode(body, &m); err != nil {
		panic(err)
	}
	fmt.Println(m.Kind, m.ID)

	err := codec.Decode([]byte{0x92, 0x07, 0xa2, 'h', 'i'}, &m) // [7, "hi"]
	fmt.Println(errors.Is(err, codec.ErrMalformed))
	// Output:
	// pong 42
	// true
}
