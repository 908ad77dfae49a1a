"""The WebSocket message format between the page and the server.

Page to server:

* binary ``[kind: 1 byte][seq: uint32 big-endian][payload]`` — kind 1 is a live
  frame (video or webcam, drawn to a canvas and encoded by the browser), kind 2
  is a file the user dropped or picked (its raw bytes);
* text, a JSON object: ``{"type": "state", ...fields}`` changes what is shown,
  ``{"type": "ping"}`` is answered with ``{"type": "pong"}``.

Server to page:

* binary result ``[header length: uint32 big-endian][header JSON][pictures]``;
  ``header["blobs"]`` lists each picture's name, MIME type, offset and length
  within the pictures section;
* text JSON: ``hello`` (on connect), ``state`` (accepted change), ``error``
  (with ``source``: ``upload``, ``frame`` or ``message``), ``pong``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..errors import NeuronscopeError

KIND_FRAME = 1
KIND_UPLOAD = 2
KINDS = {KIND_FRAME: "frame", KIND_UPLOAD: "upload"}
_HEAD = struct.Struct(">BI")


@dataclass(frozen=True)
class Incoming:
    """A frame or file from the page."""

    kind: int
    seq: int
    data: bytes

    @property
    def source(self) -> str:
        return KINDS[self.kind]


def pack_incoming(kind: int, seq: int, data: bytes) -> bytes:
    """The binary message the page sends (used by tests and benchmarks)."""
    return _HEAD.pack(kind, seq) + data


def parse_incoming(message: bytes) -> Incoming:
    """A binary message from the page; NeuronscopeError if it is malformed."""
    if len(message) < _HEAD.size:
        raise NeuronscopeError(f"malformed frame message: {len(message)} bytes, shorter than the {_HEAD.size}-byte header")
    kind, seq = _HEAD.unpack_from(message)
    if kind not in KINDS:
        raise NeuronscopeError(f"malformed frame message: unknown kind {kind} (valid: 1 = frame, 2 = upload)")
    return Incoming(kind, seq, bytes(message[_HEAD.size :]))


def parse_text(message: str) -> dict:
    """A JSON control message from the page; NeuronscopeError if it is malformed."""
    if len(message) > 64_000:
        raise NeuronscopeError(f"control message too long ({len(message)} characters; limit 64000)")
    try:
        obj = json.loads(message)
    except (ValueError, RecursionError) as e:
        raise NeuronscopeError(f"control message is not valid JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise NeuronscopeError('control message must be a JSON object with a "type" (valid: state, ping)')
    return obj


def pack_result(header: dict, blobs: list[tuple[str, bytes, str]]) -> bytes:
    """One binary result message: JSON header then the pictures back to back."""
    table, offset = [], 0
    for name, data, mime in blobs:
        table.append({"name": name, "mime": mime, "offset": offset, "length": len(data)})
        offset += len(data)
    head = json.dumps({**header, "blobs": table}, separators=(",", ":")).encode("utf-8")
    return b"".join([struct.pack(">I", len(head)), head, *(b[1] for b in blobs)])


def unpack_result(message: bytes) -> tuple[dict, dict[str, bytes]]:
    """The header and pictures by name of a result message (the page does this in JS)."""
    (n,) = struct.unpack_from(">I", message)
    header = json.loads(message[4 : 4 + n].decode("utf-8"))
    body = message[4 + n :]
    blobs = {b["name"]: bytes(body[b["offset"] : b["offset"] + b["length"]]) for b in header["blobs"]}
    return header, blobs
