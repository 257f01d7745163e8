package distributed

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/procpool/procpool"
)

// Message headers. A job's message carries its payload as the body and
// hdrJob, hdrKind, hdrReply and, if its producer gave it one, hdrDeadline. A
// result carries the result's bytes (or nothing, for an error) and hdrJob,
// hdrNode, hdrDelivery and, for an error, hdrError, hdrErrorCode and
// hdrErrorMessage (and hdrDeadLetter when the job was given up). A dead
// letter is the job's message with its headers, plus hdrJobType, hdrNode,
// hdrDelivery and the error's headers. Every message also carries
// Nats-Msg-Id, for JetStream's de-duplication: the job's id on a job and a
// dead letter, the producer's id and the job's on a result.
const (
	hdrJob          = "Procpool-Job"
	hdrKind         = "Procpool-Kind"
	hdrReply        = "Procpool-Reply"
	hdrDeadline     = "Procpool-Deadline"
	hdrJobType      = "Procpool-Job-Type"
	hdrNode         = "Procpool-Node"
	hdrDelivery     = "Procpool-Delivery"
	hdrError        = "Procpool-Error"
	hdrErrorCode    = "Procpool-Error-Code"
	hdrErrorMessage = "Procpool-Error-Message"
	hdrDeadLetter   = "Procpool-Dead-Letter"
)

// kindName is a payload kind's wire name.
func kindName(k procpool.PayloadKind) string {
	if k == procpool.Value {
		return "value"
	}
	return "blob"
}

// parseKind is kindName's inverse.
func parseKind(s string) (procpool.PayloadKind, error) {
	switch s {
	case "blob":
		return procpool.Blob, nil
	case "value":
		return procpool.Value, nil
	}
	return 0, fmt.Errorf("unknown payload kind %q", s)
}

// setError writes err's wire form into h.
func setError(h nats.Header, err error, deadLetter bool) {
	kind, code, msg := encodeError(err)
	h.Set(hdrError, string(kind))
	if code != "" {
		h.Set(hdrErrorCode, headerValue(code))
	}
	h.Set(hdrErrorMessage, headerValue(msg))
	if deadLetter {
		h.Set(hdrDeadLetter, "1")
	}
}

// headerError rebuilds the error of a result or dead letter; nil if it
// carries none.
func headerError(h nats.Header) error {
	kind := h.Get(hdrError)
	if kind == "" {
		return nil
	}
	return decodeError(errorKind(kind), h.Get(hdrErrorCode), h.Get(hdrErrorMessage))
}

// headerValue makes s safe as a header value: no CR or LF (they would end
// the header), at most 1 KiB.
func headerValue(s string) string {
	const limit = 1 << 10
	b := []byte(s)
	if len(b) > limit {
		b = append(b[:limit-3], "..."...)
	}
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// headerSize is the size of h on the wire ("NATS/1.0\r\n", one
// "Key: value\r\n" per value, "\r\n"), which counts against the server's
// max_payload and a stream's MaxMsgSize together with the body.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// formatDeadline and parseDeadline carry a deadline in hdrDeadline.
func formatDeadline(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func parseDeadline(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// validJobID reports whether id can be a job's id: 1 to 128 printable
// ASCII characters other than space.
func validJobID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
