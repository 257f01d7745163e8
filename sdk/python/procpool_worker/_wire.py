"""The protocol's constants, the decoding of the host's messages and the
encoding of the worker's (docs/protocol.md sections 2 to 5). Bytes only: no
threads, no I/O."""
import struct

import msgpack

VERSION = 1
DEFAULT_MAX_FRAME = 64 << 20  # the largest frame body we accept, announced in ready
HEADER = struct.Struct(">I")

HELLO, READY, REQUEST, RESPONSE, CANCEL, PING, PONG, SHUTDOWN = range(1, 9)
BATCH_REQUEST, BATCH_RESPONSE, CHUNK, CREDIT = range(9, 13)
BLOB, VALUE, SHARED_BLOB, SHARED_VALUE = 0, 1, 2, 3

# The optional features (docs/protocol.md section 14) this SDK supports, by
# their wire names.
FEATURE_META, FEATURE_BATCH, FEATURE_STREAM = "meta", "batch", "stream"
FEATURES = (FEATURE_META, FEATURE_BATCH, FEATURE_STREAM)
MAX_BATCH = 1024  # items in one batch frame

# Error codes the protocol defines (section 9).
CODE_HANDLER = "handler"
CODE_PANIC = "panic"
CODE_CANCELLED = "cancelled"
CODE_DEADLINE = "deadline"
CODE_UNKNOWN_JOB_TYPE = "unknown_job_type"
CODE_BAD_PAYLOAD = "bad_payload"
CODE_TOO_LARGE = "too_large"
CODE_SHUTTING_DOWN = "shutting_down"

MAX_ERR_MESSAGE = 16 << 10  # as the Go SDK: longer messages are cut

_pack_int = msgpack.Packer(use_bin_type=True).pack


class ProtocolError(Exception):
    """The host sent something the protocol does not allow."""


def unpack(body):
    """The message in a frame's body, decoded; raises ProtocolError."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    except Exception as e:
        raise ProtocolError(f"malformed frame: {e}") from None


def frame(msg):
    """A whole frame (header and body) holding the message list msg."""
    body = msgpack.packb(msg, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def bin_header(n):
    """The msgpack bin header of an n-byte bin."""
    if n < 1 << 8:
        return b"\xc4" + bytes((n,))
    if n < 1 << 16:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


def response_prefix(job_id, payload_kind):
    """The body of a successful response up to its payload element:
    [4, id, "", "", payload_kind, ..."""
    return b"\x96\x04" + _pack_int(job_id) + b"\xa0\xa0" + bytes((payload_kind,))


def error_frame(job_id, code, message, detail=b""):
    """A response frame answering job_id with an error; its payload, kind 0,
    is the error's detail: empty, or text (a panic's traceback)."""
    if len(message) > MAX_ERR_MESSAGE:
        message = message[:MAX_ERR_MESSAGE] + "..."
    return frame([RESPONSE, job_id, code, message, BLOB, detail])


def chunk_prefix(job_id, payload_kind):
    """The body of a chunk up to its payload element: [11, id, payload_kind, ..."""
    return b"\x94\x0b" + _pack_int(job_id) + bytes((payload_kind,))


def array_header(n):
    """The msgpack array header of n elements."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def batch_prefix(n, body_len):
    """The header and body start of a batch response of n items whose
    encodings take body_len bytes together: the items follow."""
    head = b"\x92\x0a" + array_header(n)
    return HEADER.pack(len(head) + body_len) + head


def pong_frame(seq):
    return frame([PONG, seq])
