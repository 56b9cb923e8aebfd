"""Authenticated frames for the TCP transport.

A frame is ``[4-byte big-endian body length][JSON body][32-byte HMAC-SHA256 of the body]``. The receiver checks
the length against a limit before reading the body, and the MAC (in constant time) before parsing it.

>>> secret = b"s3cret"
>>> message = Message(MessageType.HEARTBEAT, sender="n1", recipient="n2", term=4)
>>> frame = encode_frame(message, secret)
>>> decode_frame_body(frame[4:-32], frame[-32:], secret) == message
True
>>> decode_frame_body(frame[4:-32], frame[-32:], b"wrong")
Traceback (most recent call last):
...
omnimind.scaling.raft.transport.framing.FrameRejected: unauthenticated: HMAC mismatch
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

from ..core.errors import MalformedMessage
from ..core.messages import Message, MessageType  # noqa: F401  (MessageType: doctest)

LENGTH_PREFIX = struct.Struct(">I")
MAC_SIZE = hashlib.sha256().digest_size


class FrameRejected(Exception):
    """A frame failed validation; ``reason`` is the counter label (``oversized``, ``unauthenticated``,
    ``malformed``) and ``fatal`` says the stream can no longer be trusted to be in sync.

    >>> FrameRejected("oversized", "too big", fatal=True).reason
    'oversized'
    """

    def __init__(self, reason: str, detail: str, fatal: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.fatal = fatal


def mac(body: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def encode_frame(message: Message, secret: bytes) -> bytes:
    body = json.dumps(message.to_dict(), separators=(",", ":")).encode()
    return LENGTH_PREFIX.pack(len(body)) + body + mac(body, secret)


def check_length(length: int, max_body_bytes: int) -> None:
    if length > max_body_bytes:
        # We will not read that much; the rest of the stream is unparseable, so the connection must go.
        raise FrameRejected("oversized", f"{length} bytes > limit {max_body_bytes}", fatal=True)


def decode_frame_body(body: bytes, received_mac: bytes, secret: bytes) -> Message:
    if not hmac.compare_digest(mac(body, secret), received_mac):
        raise FrameRejected("unauthenticated", "HMAC mismatch")
    try:
        return Message.from_dict(json.loads(body))
    except (ValueError, MalformedMessage) as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FrameRejected("malformed", str(error)) from None
