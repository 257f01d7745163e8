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
		{"hello with features", codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame,
			Features: codec.AllFeatures}},
		{"ready with features", codec.Message{Kind: codec.KindReady, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame,
			PID: 4242, JobTypes: []string{"echo"}, Features: codec.FeatureBatch | codec.FeatureStream}},
		{"request with meta", codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "echo", Attempt: 2, Credit: 8,
			PayloadKind: codec.Blob, Payload: []byte("hi")}},
		{"batch request", codec.Message{Kind: codec.KindBatchRequest, Items: []codec.Message{
			{Kind: codec.KindRequest, ID: 4, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("a")},
			{Kind: codec.KindRequest, ID: 5, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("b")},
		}}},
		{"batch response", codec.Message{Kind: codec.KindBatchResponse, Items: []codec.Message{
			{Kind: codec.KindResponse, ID: 5, PayloadKind: codec.Blob, Payload: []byte("b")},
			{Kind: codec.KindResponse, ID: 4, PayloadKind: codec.Blob, Payload: []byte("a")},
		}}},
		{"chunk", codec.Message{Kind: codec.KindChunk, ID: 3, PayloadKind: codec.Blob, Payload: []byte("h")}},
		{"credit", codec.Message{Kind: codec.KindCredit, ID: 3, Credit: 4}},
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
	// hello with features:
	// 00000000  00 00 00 28 95 01 01 ce  04 00 00 00 00 94 a4 6d  |...(...........m|
	// 00000010  65 74 61 a5 62 61 74 63  68 a6 73 74 72 65 61 6d  |eta.batch.stream|
	// 00000020  ab 73 68 61 72 65 64 69  74 65 6d 73              |.shareditems|
	// ready with features:
	// 00000000  00 00 00 20 97 02 01 ce  04 00 00 00 cd 10 92 91  |... ............|
	// 00000010  a4 65 63 68 6f 00 92 a5  62 61 74 63 68 a6 73 74  |.echo...batch.st|
	// 00000020  72 65 61 6d                                       |ream|
	// request with meta:
	// 00000000  00 00 00 20 97 03 03 a4  65 63 68 6f 00 82 a7 61  |... ....echo...a|
	// 00000010  74 74 65 6d 70 74 02 a6  63 72 65 64 69 74 08 00  |ttempt..credit..|
	// 00000020  c4 02 68 69                                       |..hi|
	// batch request:
	// 00000000  00 00 00 1d 92 09 92 96  03 04 a4 65 63 68 6f 00  |...........echo.|
	// 00000010  00 c4 01 61 96 03 05 a4  65 63 68 6f 00 00 c4 01  |...a....echo....|
	// 00000020  62                                                |b|
	// batch response:
	// 00000000  00 00 00 15 92 0a 92 96  04 05 a0 a0 00 c4 01 62  |...............b|
	// 00000010  96 04 04 a0 a0 00 c4 01  61                       |........a|
	// chunk:
	// 00000000  00 00 00 07 94 0b 03 00  c4 01 68                 |..........h|
	// credit:
	// 00000000  00 00 00 04 93 0c 03 04                           |........|
}

// A Batch packs requests into batch frames as large as the peer accepts:
// Add refuses with ErrBatchFull what does not fit, and the caller flushes
// and adds it again. Each item keeps the rules of a request sent alone.
func ExampleBatch() {
	var stream bytes.Buffer
	w := codec.NewWriter(&stream, 0)
	w.SetMaxFrame(80) // the limit the worker announced in ready
	b := codec.NewBatch(w, codec.KindBatchRequest)
	for id := uint64(1); id <= 5; id++ {
		req := codec.Message{Kind: codec.KindRequest, ID: id, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("0123456789")}
		err := b.Add(&req)
		if errors.Is(err, codec.ErrBatchFull) {
			_ = b.Flush()
			err = b.Add(&req)
		}
		if err != nil {
			panic(err) // ErrFrameTooLarge: too large even alone
		}
	}
	_ = b.Flush()

	r := codec.NewReader(&stream, 0)
	var m codec.Message
	for r.Read(&m) == nil {
		fmt.Printf("%s of %d items:", m.Kind, len(m.Items))
		for _, it := range m.Items {
			fmt.Printf(" %d", it.ID)
		}
		fmt.Println()
	}
	// Output:
	// batch request of 3 items: 1 2 3
	// batch request of 2 items: 4 5
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
