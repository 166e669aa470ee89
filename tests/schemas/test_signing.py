"""Event signatures and the scorer registry, without any server."""

from __future__ import annotations

import pytest

from schemas.signing import (
    Registry,
    RegistryError,
    Scorer,
    SignatureError,
    Signer,
    generate_key,
    split,
    token_hash,
    verify,
)

BODY = b'{"type":"toss","v":1,"seq":2,"source":"scorer:desk"}'


@pytest.fixture(scope="module")
def desk() -> tuple[Signer, Registry]:
    pem, public = generate_key()
    registry = Registry({"desk": Scorer("desk", public, ("scorer:desk",), token_hash("t0k"))})
    return Signer("desk", pem), registry


def test_a_signature_covers_the_exact_bytes_and_is_the_last_member(desk) -> None:
    signer, registry = desk
    wire = signer.sign(BODY)
    assert wire.startswith(BODY[:-1]) and wire.endswith(b'"}') and b',"sig":"desk:' in wire
    scorer, body = verify(wire, registry)
    assert scorer.id == "desk" and body == BODY


@pytest.mark.parametrize("mutate, said", [
    (lambda w: w.replace(b'"seq":2', b'"seq":3'), "does not verify"),
    (lambda w: w.replace(b'"seq":2', b'"seq": 2'), "does not verify"),   # whitespace counts
    (lambda w: w.replace(b'"sig":"desk:', b'"sig":"mallory:'), "not in the registry"),
    (lambda w: w[:w.rindex(b',"sig"')] + b"}", "unsigned"),
    (lambda w: w[:-3] + b'"}', "malformed"),                              # signature cut short
    (lambda w: w.replace(b'"sig":"desk:', b'"sig":"desk'), "malformed"),
    (lambda w: b"not json at all", "unsigned"),
])
def test_tampering_is_detected(desk, mutate, said) -> None:
    signer, registry = desk
    with pytest.raises(SignatureError, match=said):
        verify(mutate(signer.sign(BODY)), registry)


def test_only_an_encoded_event_can_be_signed(desk) -> None:
    with pytest.raises(ValueError):
        desk[0].sign(b"{}")
    with pytest.raises(ValueError):
        desk[0].sign(b'["a list"]')


def test_registry_round_trip_sources_and_tokens(desk) -> None:
    _, registry = desk
    back = Registry.decode(registry.encode())
    assert back == registry
    scorer = back.get("desk")
    assert scorer is not None and scorer.allows("scorer:desk") and not scorer.allows("cricsheet")
    assert back.by_token("t0k") == scorer and back.by_token("guess") is None


@pytest.mark.parametrize("doc, field", [
    (b"[]", "expected"),
    (b'{"type": "scorer_registry", "v": 2, "scorers": {}}', "expected"),
    (b'{"type": "scorer_registry", "v": 1, "scorers": {"Bad Id": {}}}', "scorer id"),
    (b'{"type": "scorer_registry", "v": 1, "scorers": {"a": {"public_key": "AAAA", '
     b'"sources": ["x"]}}}', "public_key"),
    (b'{"type": "scorer_registry", "v": 1, "scorers": {"a": {"public_key": "' + b"A" * 43
     + b'", "sources": []}}}', "sources"),
])
def test_a_bad_registry_names_the_field(doc, field) -> None:
    with pytest.raises(RegistryError, match=field):
        Registry.decode(doc)


def test_split_returns_the_signed_body() -> None:
    pem, _ = generate_key()
    wire = Signer("a-1", pem).sign(BODY)
    scorer_id, signature, body = split(wire)
    assert (scorer_id, len(signature), body) == ("a-1", 64, BODY)
