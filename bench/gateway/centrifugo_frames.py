"""Centrifugo's bidirectional client protocol (JSON), as much of it as a bench client needs.

The peer of `stumpcast bench gateway --peer centrifugo` speaks its own protocol over the same
WebSocket framing (``loadclient`` does the framing for both). Source: centrifugal.dev, "Client
protocol" (docs/transports/client_protocol.md in centrifugal/centrifugal.dev) and the client
schema it names as the source of truth (centrifugal/protocol, definitions/client.proto):

* a client sends ``Command`` objects, each with an incremental ``id``; the server answers each
  with a ``Reply`` carrying the same ``id`` (``{"id":1,"connect":{...}}``) or an ``error``;
* a ``Reply`` without ``id`` is an asynchronous push; a publication into a channel is
  ``{"push":{"channel":"c","pub":{"data":<the published JSON>, ...}}}`` (in JSON the ``bytes``
  data field is embedded as JSON, not base64);
* several replies may share one frame, one per line (``\\n``) ("top level batching");
* ping: the server sends an empty reply ``{}`` (every 25 s by default) and expects an empty
  command ``{}`` back (the JavaScript SDK's ``_handleServerPing`` sends ``{}``).

Pure: bytes in, what to do out; ``loadclient`` does the I/O. A push is the same bytes for every
client of a channel, so a process decodes each distinct one once (``Pushes``), as ``Heads``
does for the gateway's updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

PING = b"{}"   # the server's ping, and the client's pong: an empty reply / an empty command
PONG = b"{}"
CONNECT_ID, SUBSCRIBE_ID = 1, 2


def connect_command() -> bytes:
    """No token: the peer runs without client authentication (as in the issue's runs)."""
    return orjson.dumps({"id": CONNECT_ID, "connect": {}})


def subscribe_command(channel: str) -> bytes:
    return orjson.dumps({"id": SUBSCRIBE_ID, "subscribe": {"channel": channel}})


def peer_channel(match: str) -> str:
    """The peer's channel for a match: the bare match id. A ``:`` in a Centrifugo channel
    name starts a namespace, which would need one configured; ours (``match:<id>``) would."""
    return match


def lines(payload: bytes) -> list[bytes]:
    """The replies of one frame (line-delimited JSON; most frames hold one)."""
    if b"\n" not in payload:
        return [payload]
    return [x for x in payload.split(b"\n") if x]


class Pushes:
    """Each distinct publication line decoded once per process: ``(head, ts seconds)`` of our
    update record inside it, or None when the line is not a publication of one. The head is
    what ``loadclient.head`` gives for a stumpcast update (type, v, match_id, epoch, seq,
    prev_seq), so both protocols feed the same accounting."""

    __slots__ = ("seen", "seconds")

    def __init__(self, seconds: Callable[[str], float]) -> None:
        self.seconds = seconds  # the record's ``ts`` to seconds (``loadclient.ts_seconds``)
        self.seen: dict[bytes, tuple[dict[str, Any], float] | None] = {}

    def get(self, line: bytes) -> tuple[dict[str, Any], float] | None:
        try:
            return self.seen[line]
        except KeyError:
            pass
        data = publication(orjson.loads(line))
        hit = None if data is None else (data[0], self.seconds(data[1]) if data[1] else 0.0)
        if len(self.seen) >= 4096:
            self.seen.clear()
        self.seen[line] = hit
        return hit


def publication(reply: Any) -> tuple[dict[str, Any], str] | None:
    """The head and ``ts`` of the update record a push carries, or None."""
    push = reply.get("push") if isinstance(reply, dict) else None
    data = push.get("pub", {}).get("data") if isinstance(push, dict) else None
    if not isinstance(data, dict) or data.get("type") != "update":
        return None
    head = {k: data[k] for k in ("type", "v", "match_id", "epoch", "seq", "prev_seq")
            if k in data}
    return head, str(data.get("ts", ""))


def classify(line: bytes) -> tuple[str, Any]:
    """A reply that is not a push: ("ping", None), ("connect"|"subscribe", result),
    ("error", (id, message)) or ("other", reply)."""
    if line == PING:
        return "ping", None
    reply = orjson.loads(line)
    if "error" in reply:
        err = reply["error"]
        return "error", (reply.get("id"), f"{err.get('code')} {err.get('message')}")
    if reply.get("id") == CONNECT_ID and "connect" in reply:
        return "connect", reply["connect"]
    if reply.get("id") == SUBSCRIBE_ID and "subscribe" in reply:
        return "subscribe", reply["subscribe"]
    return "other", reply
