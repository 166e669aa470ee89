"""Delivery cores without I/O: signatures, the retry schedule, the spoiler hold, routing."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from notifier.retry import DeadLetter, Delivered, Retry, RetryPolicy, next_step
from notifier.routing import Action, decide
from notifier.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    SignatureError,
    sign,
    verify,
)
from notifier.spoiler import Held, SpoilerHold
from notifier.subscriptions import SubscriptionError, make
from notifier.tracker import OffsetTracker
from schemas.notifications import Kind, Notification, Priority, retraction


def note(seq: int, ts: str = "2026-05-01T14:00:00Z", kind: Kind = Kind.WICKET) -> Notification:
    return Notification(id=f"m:{seq}:{kind.value}:x", match_id="m", kind=kind,
                        priority=Priority.P1, ts=ts, seq=seq, innings=1, over="3.2",
                        text="WICKET! x out, bowled")


# -- signing ----------------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = note(1).encode()
    headers = sign("s3cret", 1_790_000_000, body, "m:1:wicket:x")
    want = hmac.new(b"s3cret", b"1790000000." + body, hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"t=1790000000,v1={want}"
    assert headers[HEADER_ID] == "m:1:wicket:x"
    assert verify("s3cret", headers[HEADER_SIGNATURE], body, now=1_790_000_010) == 1_790_000_000


@pytest.mark.parametrize("secret,body,now", [
    ("wrong", b"{}", 1_790_000_000),          # other secret
    ("s", b"{} ", 1_790_000_000),             # body changed
    ("s", b"{}", 1_790_000_000 + 301),        # replayed too late
])
def test_bad_signatures_are_rejected(secret, body, now):
    header = sign("s", 1_790_000_000, b"{}", "id")[HEADER_SIGNATURE]
    with pytest.raises(SignatureError):
        verify(secret, header, body, now=now)


def test_rotation_accepts_any_listed_signature():
    good = sign("new", 5, b"x", "id")[HEADER_SIGNATURE].split(",")[1]
    assert verify("new", f"t=5,v1=deadbeef,{good}", b"x", now=5) == 5
    with pytest.raises(SignatureError):
        verify("s", "v1=abc", b"x", now=5)


# -- retry ------------------------------------------------------------------------------------
def test_full_jitter_stays_under_the_exponential_ceiling():
    policy = RetryPolicy(max_attempts=10, base_s=0.5, cap_s=8)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 8]
    assert policy.delay(3, 0.0) == 0 and policy.delay(3, 0.999) < 2
    step = next_step(policy, 3, 503, None, 0.5)
    assert step == Retry(1.0, "HTTP 503")


def test_outcomes_by_status_and_attempts():
    p = RetryPolicy(max_attempts=3)
    assert next_step(p, 1, 204, None, 0.3) == Delivered(204)
    assert isinstance(next_step(p, 1, None, "ConnectionRefused", 0.3), Retry)
    assert isinstance(next_step(p, 1, 429, None, 0.3), Retry)
    assert isinstance(next_step(p, 1, 404, None, 0.3), DeadLetter)   # will not get better
    assert next_step(p, 3, 500, None, 0.3) == DeadLetter("HTTP 500 after 3 attempts")


# -- spoiler hold -----------------------------------------------------------------------------
def _held(n: Notification, ball_ms: int, sub: str = "sub", since: int = 0) -> Held:
    return Held(sub, "sess", n, n.encode(), ball_ms, since)


def test_hold_releases_each_note_when_the_playhead_passes_its_ball():
    hold = SpoilerHold(max_hold_ms=60_000)
    for seq, ball in ((1, 1000), (2, 5000), (3, 9000)):
        hold.hold(_held(note(seq), ball))
    released = []
    for playhead in (0, 999, 1000, 4000, 8999, 9500):
        out, expired = hold.release({"sess": playhead}, now_ms=100)
        assert not expired
        released.append((playhead, [h.note.seq for h in out]))
    assert released == [(0, []), (999, []), (1000, [1]), (4000, []), (8999, [2]), (9500, [3])]
    assert len(hold) == 0


def test_hold_without_playhead_waits_then_expires_and_retraction_cancels():
    hold = SpoilerHold(max_hold_ms=1_000)
    hold.hold(_held(note(1), 1000))
    hold.hold(_held(note(2), 2000))
    assert hold.release({}, now_ms=500) == ([], [])
    assert hold.retract("sub", note(2).id).note.seq == 2
    out, expired = hold.release({}, now_ms=1_001)
    assert out == [] and [h.note.seq for h in expired] == [1]


# -- routing ----------------------------------------------------------------------------------
def test_routing_is_idempotent_and_honours_retractions():
    n = note(1)
    r = retraction(n, "2026-05-01T14:01:00Z", 2)
    kw = dict(delivered=False, retracted=False, original_delivered=False, no_spoilers=False,
              released=False)
    assert decide(n, **kw) is Action.SEND
    assert decide(n, **{**kw, "delivered": True}) is Action.SKIP_DUPLICATE
    assert decide(n, **{**kw, "retracted": True}) is Action.SKIP_RETRACTED
    assert decide(r, **kw) is Action.SKIP_ORPHAN_RETRACTION
    assert decide(r, **{**kw, "original_delivered": True}) is Action.SEND
    assert decide(n, **{**kw, "no_spoilers": True}) is Action.HOLD
    assert decide(n, **{**kw, "no_spoilers": True, "released": True}) is Action.SEND


def test_tracker_commits_the_lowest_unfinished_offset():
    t = OffsetTracker()
    t.add(0, 10, 2)
    t.add(0, 11, 0)
    t.add(0, 12, 1)
    assert t.committable() == {0: 10}
    t.done(0, 10)
    t.done(0, 12)
    assert t.committable() == {0: 10}
    t.done(0, 10)
    assert t.committable() == {0: 13}


def test_subscription_validation_and_stable_id():
    a = make("http://127.0.0.1:9/hook", "s", match_id="m")
    assert a.id == make("http://127.0.0.1:9/hook", "other", match_id="m").id
    with pytest.raises(SubscriptionError):
        make("ftp://x", "s")
    with pytest.raises(SubscriptionError):
        make("http://x", "s", no_spoilers=True)


def test_a_message_fetched_again_while_in_work_does_not_reset_its_jobs():
    t = OffsetTracker()
    assert t.add(0, 10, 2)
    t.done(0, 10)
    assert not t.add(0, 10, 2)        # the same offset again (a repeated fetch): ignored
    t.done(0, 10)
    assert t.committable() == {0: 11}


def test_jobs_belong_to_the_assignment_they_were_read_under():
    from notifier.tracker import Ownership

    owned = Ownership()
    owned.assign({0, 1})
    g0 = owned.generation(0)
    assert owned.owns(0, g0) and not owned.owns(2, g0) and not owned.owns(0, None)
    owned.revoke({0})
    assert not owned.owns(0, g0) and owned.generation(0) is None
    owned.assign({0})                  # back again: a new read, a new generation
    assert owned.generation(0) != g0 and not owned.owns(0, g0)
    assert owned.owns(1, owned.generation(1))


def test_held_notifications_of_revoked_partitions_or_removed_hooks_are_taken_out():
    hold = SpoilerHold()
    a = Held("sub-a", "s1", note(1), b"", 1, 0, (0, 5))
    b = Held("sub-a", "s1", note(2), b"", 2, 0, (1, 6))
    c = Held("sub-b", "s2", note(3), b"", 3, 0, (1, 7))
    for h in (a, b, c):
        hold.hold(h)
    assert hold.drop(partitions={1}) == [b, c]
    assert len(hold) == 1
    hold.hold(c)
    assert hold.drop(subscription_id="sub-a") == [a]
    assert hold.held == {"sub-b": [c]}
