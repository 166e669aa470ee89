"""Fanout without sockets: encode once, batching, conflation, never-dropped notes, slow close."""

import orjson

from gateway.hub import Client, Hub, text_frame
from gateway.limits import Limits
from schemas import patch as patch_format
from schemas import protocol as p


class FakeSink:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.backed_up = buffered
        self.closed: tuple[int, str] | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def buffered(self) -> int:
        return self.backed_up

    def offer(self, data: bytes, high_water: int) -> bool:
        if self.backed_up >= high_water:
            return False
        self.write(data)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def messages(self) -> list[dict]:
        return [orjson.loads(x) for x in frames(b"".join(self.writes))]


def frames(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x81
        n = data[i + 1]
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append(data[i:i + n])
        i += n
    return out


LIMITS = Limits(write_high_water=1000, queue_bytes=4000, write_timeout=5.0)


def update(seq: int, runs: int) -> bytes:
    return orjson.dumps({"type": "update", "v": 1, "match_id": "m", "epoch": 1, "seq": seq,
                         "prev_seq": seq - 1, "ts": "t", "patch": [["s", ["runs"], runs]]})


def snapshot_at(seq: int, runs: int):
    return lambda: p.snapshot("m", 1, seq, "t", orjson.dumps({"runs": runs}))


def test_text_frame_lengths():
    for n in (0, 125, 126, 65535, 65536):
        assert frames(text_frame(b"a" * n)) == [b"a" * n]


def test_same_bytes_object_to_every_subscriber_in_one_write():
    hub, sinks = Hub(LIMITS), [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.attach(Client(sink), "match:m", 0)
    hub.publish_scores("match:m", [(1, update(1, 1)), (2, update(2, 2))], snapshot_at(2, 2), 0)
    first = sinks[0].writes[0]
    assert all(len(s.writes) == 1 and s.writes[0] is first for s in sinks)
    assert [m["seq"] for m in sinks[0].messages()] == [1, 2]
    assert hub.stats.messages_out == 6 and hub.stats.writes == 3


def test_position_filter_skips_what_a_resumed_client_already_has():
    hub, sink = Hub(LIMITS), FakeSink()
    hub.attach(Client(sink), "match:m", 5)
    hub.publish_scores("match:m", [(5, update(5, 5)), (6, update(6, 6))], snapshot_at(6, 6), 0)
    assert [m["seq"] for m in sink.messages()] == [6]


def test_slow_client_gets_a_conflated_snapshot_that_leaves_it_correct():
    hub, fast, slow = Hub(LIMITS), FakeSink(), FakeSink(buffered=5000)
    hub.attach(Client(fast), "match:m", 0)
    slow_client = Client(slow)
    hub.attach(slow_client, "match:m", 0)
    for seq in range(1, 6):
        hub.publish_scores("match:m", [(seq, update(seq, seq * 10))], snapshot_at(seq, seq * 10),
                           0)
    assert slow.writes == [] and len(slow_client.queue) == 1
    assert hub.stats.conflated == 4
    slow.backed_up = 0
    hub.sweep(1.0)
    (msg,) = slow.messages()
    assert msg["type"] == "snapshot" and msg["seq"] == 5 and msg["card"] == {"runs": 50}
    card = {"runs": 0}
    for m in fast.messages():
        card = patch_format.apply(card, m["patch"])
    assert card == msg["card"]  # the fast client never noticed the slow one


def test_notes_are_never_conflated():
    hub, slow = Hub(LIMITS), FakeSink(buffered=5000)
    client = Client(slow)
    hub.attach(client, "notes:m", (0, 0))
    for i in range(1, 4):
        hub.publish_notes("notes:m", [((i, 0), p.note("m", i, 0, b"{}"))], 0)
    slow.backed_up = 0
    hub.sweep(0.1)
    assert [m["seq"] for m in slow.messages()] == [1, 2, 3]


def test_queue_over_its_byte_bound_closes_only_that_client():
    hub, slow, fast = Hub(LIMITS), FakeSink(buffered=5000), FakeSink()
    hub.attach(Client(slow), "notes:m", (0, 0))
    hub.attach(Client(fast), "notes:m", (0, 0))
    for i in range(1, 40):
        hub.publish_notes("notes:m", [((i, 0), p.note("m", i, 0, b'{"x":"' + b"y" * 100 + b'"}'))],
                          0)
    assert slow.closed is not None and slow.closed[0] == p.CloseCode.SLOW
    assert fast.closed is None and len(fast.messages()) == 39
    assert hub.stats.slow_closes == 1 and hub.subscribers("notes:m") == 1


def test_no_progress_within_write_timeout_is_slow():
    hub, stuck = Hub(LIMITS), FakeSink(buffered=5000)
    hub.attach(Client(stuck), "match:m", 0)
    hub.publish_scores("match:m", [(1, update(1, 1))], snapshot_at(1, 1), now=0.0)
    hub.sweep(4.0)
    assert stuck.closed is None
    hub.sweep(6.0)
    assert stuck.closed[0] == p.CloseCode.SLOW


def test_reset_replaces_pending_scores_with_the_new_snapshot():
    hub, slow = Hub(LIMITS), FakeSink(buffered=5000)
    client = Client(slow)
    hub.attach(client, "match:m", 0)
    hub.publish_scores("match:m", [(1, update(1, 1))], snapshot_at(1, 1), 0)
    hub.reset("match:m", 1, p.snapshot("m", 2, 1, "t", b'{"runs":0}'), 0)
    slow.backed_up = 0
    hub.sweep(0.1)
    assert [(m["type"], m["epoch"]) for m in slow.messages()] == [("snapshot", 2)]


class DirectSink(FakeSink):
    """A socket the hub may write past its transport: ``fd`` while nothing is buffered."""

    def __init__(self, fd: int, buffered: int = 0) -> None:
        super().__init__(buffered)
        self.fd, self.rests = fd, []  # type: ignore[var-annotated]

    def direct(self) -> int:
        return -1 if self.backed_up else self.fd

    def rest(self, data: bytes, sent: int) -> None:
        self.rests.append(sent)
        self.write(data[sent:] if sent > 0 else data)


def test_a_large_fanout_is_one_batch_and_only_the_refused_go_through_the_transport():
    from gateway.hub import BATCH_MIN

    hub = Hub(LIMITS)
    kernel: dict[int, bytes] = {}
    calls: list[list[int]] = []

    def send_many(fds: list[int], data: bytes) -> list[tuple[int, int]]:
        calls.append(fds)
        fails = []
        for i, fd in enumerate(fds):  # fd 1: 5 bytes taken; fd 2: none (full); fd 3: reset
            sent = {1: 5, 2: 0, 3: -104}.get(fd, len(data))
            kernel[fd] = data[:max(sent, 0)]
            if sent != len(data):
                fails.append((i, sent))
        return fails

    hub.send_many = send_many
    sinks = [DirectSink(fd) for fd in range(BATCH_MIN + 10)]
    behind = DirectSink(1000, buffered=10)        # bytes still in its transport: not direct
    full = DirectSink(1001, buffered=LIMITS.write_high_water)  # over high water: queued
    for s in [*sinks, behind, full]:
        hub.attach(Client(s), "match:m", 0)
    hub.publish_scores("match:m", [(1, update(1, 4))], snapshot_at(1, 4), 0.0)
    frame = text_frame(update(1, 4))
    assert calls == [list(range(BATCH_MIN + 10))]          # one call, every idle socket
    assert all(kernel[s.fd] == frame for s in sinks if s.fd not in (1, 2, 3))
    assert all(s.writes == [] for s in sinks if s.fd not in (1, 2, 3))
    assert kernel[1] + sinks[1].writes[0] == frame and sinks[1].rests == [5]
    assert sinks[2].writes == [frame] and sinks[3].writes == [frame]  # transport finds the error
    assert behind.writes == [frame] and full.writes == []          # after its bytes / queued
    assert hub.backlog == {next(c for c in hub.channels["match:m"] if c.sink is full)}
    hub.publish_scores("match:m", [(1, update(1, 4))], snapshot_at(1, 4), 0.0)
    assert len(calls) == 1, "a position already written is not sent again"


def test_a_small_fanout_does_not_batch():
    hub = Hub(LIMITS)
    hub.send_many = lambda fds, data: (_ for _ in ()).throw(AssertionError("batched"))
    sink = DirectSink(7)
    hub.attach(Client(sink), "match:m", 0)
    hub.publish_scores("match:m", [(1, update(1, 4))], snapshot_at(1, 4), 0.0)
    assert sink.writes == [text_frame(update(1, 4))]
