"""Connection tokens and session ids (no server): what is required, what is refused."""

from __future__ import annotations

import time

import pytest

from gateway.auth import AuthConfig, SessionIds, verify_token
from gateway.errors import AuthFailed, TokenExpired
from gateway.limits import Limits, PerAddress

SECRET = "unit-secret-0123456789-0123456789-0123"
AUTH = AuthConfig(hs256_secret=SECRET)


def tok(**claims: object) -> str:
    import jwt

    doc = {"sub": "u", "channels": ["match:*"], "aud": "stumpcast-gateway", "iss": "stumpcast",
           "exp": time.time() + 60, **claims}
    return jwt.encode({k: v for k, v in doc.items() if v is not None}, SECRET, algorithm="HS256")


def test_a_complete_token_is_accepted() -> None:
    claims = verify_token(tok(), AUTH, time.time())
    assert claims.allows("match:1") and not claims.allows("notes:1") and claims.exp


@pytest.mark.parametrize("claims, said", [
    ({"exp": None}, "exp"), ({"aud": None}, "aud"), ({"iss": None}, "iss"),
    ({"aud": "other"}, "(?i)audience"), ({"iss": "other"}, "(?i)issuer"), ({"exp": "soon"}, "exp"),
])
def test_missing_or_foreign_claims_are_refused(claims, said) -> None:
    with pytest.raises(AuthFailed, match=said):
        verify_token(tok(**claims), AUTH, time.time())


def test_expiry_is_checked_against_the_given_clock() -> None:
    with pytest.raises(TokenExpired):
        verify_token(tok(exp=1000.0), AUTH, now=2000.0)


def test_session_ids_are_kept_only_if_issued() -> None:
    ids = SessionIds(b"k" * 32)
    first = ids.issue(None)
    assert ids.issue(first) == first
    assert ids.issue("made-up.x") != "made-up.x"
    assert SessionIds(b"other-key").issue(first) != first  # another gateway's key
    assert ids.issue(first.split(".")[0] + ".") != first


def test_per_address_limits() -> None:
    limits = Limits(connections_per_ip=2, accepts_per_ip=1.0, accept_burst_per_ip=3)
    per = PerAddress(limits)
    for _ in range(2):
        assert per.admit("1.2.3.4", 0.0) is None
        per.opened("1.2.3.4")
    assert "connections" in (per.admit("1.2.3.4", 0.0) or "")
    assert per.admit("5.6.7.8", 0.0) is None  # another address is not affected
    per.closed("1.2.3.4")
    assert per.admit("1.2.3.4", 0.0) is None       # the third token of the burst
    assert "per second" in (per.admit("1.2.3.4", 0.0) or "")
    assert per.admit("1.2.3.4", 1.5) is None       # refilled
