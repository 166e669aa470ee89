"""The session state machine without sockets: each bad input gets its documented answer."""

import orjson
import pytest

from gateway.auth import ANONYMOUS, Claims
from gateway.limits import Limits
from gateway.session import Close, Join, Leave, Send, Session
from schemas import protocol as p


def sub(channel: str, rid: int = 1, since: dict | None = None) -> bytes:
    doc = {"type": "subscribe", "v": 1, "id": rid, "channel": channel}
    if since is not None:
        doc["since"] = since
    return orjson.dumps(doc)


def error_code(out: list) -> str:
    assert len(out) == 1 and isinstance(out[0], Send)
    doc = orjson.loads(out[0].data)
    assert doc["type"] == "error" and doc["v"] == 1
    return doc["code"]


@pytest.fixture
def session() -> Session:
    return Session(ANONYMOUS, Limits(), now=0.0)


class TestMalformedInput:
    @pytest.mark.parametrize("raw, code", [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_message"),
        (b'{"type": "subscribe", "v": 2, "channel": "match:1"}', "unsupported_version"),
        (b'{"type": "publish", "v": 1}', "unknown_type"),
        (b'{"type": "subscribe", "v": 1, "channel": "chat:1"}', "bad_channel"),
        (b'{"type": "subscribe", "v": 1, "channel": "match:a b"}', "bad_channel"),
        (b'{"type": "subscribe", "v": 1, "channel": "match:1", "since": {"epoch": -1, '
         b'"seq": 2}}', "bad_message"),
        (b'{"type": "ping", "v": 1, "id": {"x": 1}}', "bad_message"),
    ])
    def test_answered_in_band_and_connection_stays_open(self, session, raw, code):
        assert error_code(session.receive(raw, 0.0)) == code
        assert not session.closed
        assert isinstance(session.receive(sub("match:1"), 0.0)[0], Join)

    def test_request_id_is_echoed_on_errors(self, session):
        out = session.receive(b'{"type": "nope", "v": 1, "id": 7}', 0.0)
        assert orjson.loads(out[0].data)["id"] == 7

    def test_oversized_message_is_refused_not_parsed(self, session):
        big = sub("match:1")[:-1] + b', "pad": "' + b"x" * 5000 + b'"}'
        assert error_code(session.receive(big, 0.0)) == "too_large"


class TestSubscriptions:
    def test_subscribe_yields_join_with_since(self, session):
        out = session.receive(sub("match:m1", since={"epoch": 2, "seq": 9}), 0.0)
        assert out == [Join(1, p.Channel("match", "m1"), p.ChannelPosition(2, 9))]

    def test_repeat_subscribe_is_a_resume_not_a_new_slot(self):
        s = Session(ANONYMOUS, Limits(max_subscriptions=1), 0.0)
        assert isinstance(s.receive(sub("match:a"), 0.0)[0], Join)
        assert isinstance(s.receive(sub("match:a", since={"epoch": 1, "seq": 3}), 0.1)[0], Join)
        assert error_code(s.receive(sub("notes:a"), 0.2)) == "too_many_subscriptions"

    def test_ten_thousand_subscriptions_hit_the_limits(self):
        s = Session(ANONYMOUS, Limits(max_subscriptions=64, messages_per_second=1e9,
                                      message_burst=10**6), 0.0)
        answers = [s.receive(sub(f"match:m{i}", i), 0.0)[0] for i in range(10_000)]
        joins = [a for a in answers if isinstance(a, Join)]
        assert len(joins) == 64
        assert {error_code([a]) for a in answers if isinstance(a, Send)} == \
            {"too_many_subscriptions"}

    def test_unsubscribe(self, session):
        assert error_code(session.receive(
            b'{"type": "unsubscribe", "v": 1, "channel": "match:1"}', 0.0)) == "not_subscribed"
        session.receive(sub("match:1"), 0.0)
        out = session.receive(b'{"type": "unsubscribe", "v": 1, "channel": "match:1"}', 0.0)
        assert isinstance(out[0], Leave) and session.channels == set()

    def test_failed_join_frees_the_slot(self):
        s = Session(ANONYMOUS, Limits(max_subscriptions=1), 0.0)
        s.receive(sub("match:gone"), 0.0)
        s.join_failed("match:gone")
        assert isinstance(s.receive(sub("match:other"), 0.0)[0], Join)

    def test_ping(self, session):
        out = session.receive(b'{"type": "ping", "v": 1, "id": "a"}', 0.0)
        assert orjson.loads(out[0].data) == {"type": "pong", "v": 1, "id": "a"}


class TestPermissions:
    def test_channel_patterns_from_the_token(self):
        claims = Claims(sub="u1", channels=("match:*", "notes:42"))
        s = Session(claims, Limits(), 0.0)
        assert isinstance(s.receive(sub("match:7"), 0.0)[0], Join)
        assert isinstance(s.receive(sub("notes:42"), 0.0)[0], Join)
        assert error_code(s.receive(sub("notes:7"), 0.0)) == "forbidden"

    def test_expired_token_closes_with_reconnect_code(self):
        s = Session(Claims(sub="u", channels=("*",), exp=100.0), Limits(), 0.0)
        assert isinstance(s.receive(sub("match:1"), 99.0)[0], Join)
        out = s.receive(sub("notes:1"), 101.0)
        assert out == [Close(p.CloseCode.TOKEN_EXPIRED, "token expired")]
        assert p.should_reconnect(out[0].code)
        assert s.receive(sub("notes:1"), 102.0) == []

    def test_tick_closes_an_idle_connection_whose_token_expired(self):
        s = Session(Claims(sub="u", channels=("*",), exp=10.0), Limits(), 0.0)
        assert s.tick(5.0) == []
        assert isinstance(s.tick(11.0)[0], Close)


class TestRateLimit:
    def test_burst_then_errors_then_terminal_close(self):
        s = Session(ANONYMOUS, Limits(messages_per_second=10, message_burst=5,
                                      max_violations=3), 0.0)
        ping = b'{"type": "ping", "v": 1}'
        assert all(isinstance(s.receive(ping, 0.0)[0], Send) for _ in range(5))
        assert [error_code(s.receive(ping, 0.0)) for _ in range(3)] == ["rate_limited"] * 3
        out = s.receive(ping, 0.0)
        assert out == [Close(p.CloseCode.RATE_LIMITED, "too many messages")]

    def test_tokens_come_back_with_time(self):
        s = Session(ANONYMOUS, Limits(messages_per_second=10, message_burst=1), 0.0)
        ping = b'{"type": "ping", "v": 1}'
        s.receive(ping, 0.0)
        assert error_code(s.receive(ping, 0.0)) == "rate_limited"
        assert orjson.loads(s.receive(ping, 0.2)[0].data)["type"] == "pong"
