"""Authenticated producers: Ed25519 signatures on match events, and the scorer registry.

Kafka credentials say who may write to ``match.events``; they cannot say which scorer wrote an
event, nor which sources that scorer may claim. So every event carries a signature by its
scorer's own key, over the event's exact bytes, and the streams worker verifies it against the
registry before anything else (STYLE.md 15: identity is authenticated, not declared).

Wire form: the signature is the event object's last member, ``"sig": "<scorer id>:<base64url
of the 64-byte Ed25519 signature>"``, appended to the encoded event::

    body = codec.encode(event)                     # b'{"type": ..., "payload": {...}}'
    wire = body[:-1] + b',"sig":"desk:MEUCIQ..."}'

The signed bytes are ``body``, recovered from the wire by cutting that last member off, so the
signature covers the bytes exactly (no canonical re-encoding that a codec change could break),
and the worker decodes ``body``, the bytes that were signed, never the wire. Readers that do
not verify see one extra envelope field, which the codec accepts and ignores.

The registry (a JSON contract file, ``STUMPCAST_SCORER_REGISTRY``)::

    {"type": "scorer_registry", "v": 1, "scorers": {
        "desk": {"public_key": "<base64url, 32 bytes>", "sources": ["scorer:desk"],
                 "token_sha256": "<hex sha-256 of the ingest bearer token>"}}}

``sources`` are fnmatch patterns an event's ``source`` must match. Pure: no files are read
here except by ``Registry.load``; keys come in as bytes.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.access import SCORER_ID

SIG_MEMBER = b',"sig":"'
SIG_BYTES = 64
REGISTRY_TYPE = "scorer_registry"


class SignatureError(ValueError):
    """An event that is unsigned, signed by an unknown scorer, or whose signature does not
    verify. The message says which, for the dead-letter record."""


class RegistryError(ValueError):
    """A registry file that is not a valid v1 registry; the message names the field."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Scorer:
    id: str
    public_key: bytes                      # raw Ed25519, 32 bytes
    sources: tuple[str, ...]
    token_sha256: str | None = None

    def allows(self, source: str) -> bool:
        return any(fnmatch.fnmatchcase(source, pattern) for pattern in self.sources)

    def token_matches(self, token: str) -> bool:
        return self.token_sha256 is not None and hmac.compare_digest(
            self.token_sha256, token_hash(token))

    def verify(self, body: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            _public_key(self.public_key).verify(signature, body)
        except InvalidSignature:
            return False
        return True


@functools.lru_cache(maxsize=256)
def _public_key(raw: bytes) -> Any:
    """Parsed once per key: the worker verifies every event."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Registry:
    scorers: dict[str, Scorer] = field(default_factory=dict)

    def get(self, scorer_id: str) -> Scorer | None:
        return self.scorers.get(scorer_id)

    def by_token(self, token: str) -> Scorer | None:
        """The scorer whose ingest token this is (constant-time compare of the hashes)."""
        found = None
        for scorer in self.scorers.values():
            if scorer.token_matches(token):
                found = scorer
        return found

    def with_scorer(self, scorer: Scorer) -> Registry:
        return Registry({**self.scorers, scorer.id: scorer})

    def encode(self) -> bytes:
        return orjson.dumps({"type": REGISTRY_TYPE, "v": 1, "scorers": {
            s.id: {"public_key": _b64(s.public_key), "sources": list(s.sources),
                   **({"token_sha256": s.token_sha256} if s.token_sha256 else {})}
            for s in sorted(self.scorers.values(), key=lambda s: s.id)}},
            option=orjson.OPT_INDENT_2)

    @classmethod
    def decode(cls, data: bytes) -> Registry:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("type") != REGISTRY_TYPE or doc.get("v") != 1:
            raise RegistryError(f'expected {{"type": "{REGISTRY_TYPE}", "v": 1, ...}}')
        entries = doc.get("scorers")
        if not isinstance(entries, dict):
            raise RegistryError("scorers: must be an object")
        return cls({sid: _scorer(sid, entry) for sid, entry in entries.items()})

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            return cls.decode(path.read_bytes())
        except FileNotFoundError:
            raise RegistryError(f"{path} does not exist: `stumpcast stack up` generates the "
                                "local stack's registry; elsewhere set "
                                "STUMPCAST_SCORER_REGISTRY") from None
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from None


def _scorer(scorer_id: str, entry: Any) -> Scorer:
    where = f"scorers.{scorer_id}"
    if not SCORER_ID.match(scorer_id):
        raise RegistryError(f"{where}: a scorer id is 1-32 of a-z, 0-9 and '-'")
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: must be an object")
    try:
        key = _unb64(str(entry.get("public_key", "")))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise RegistryError(f"{where}.public_key: must be 32 bytes, base64url")
    sources = entry.get("sources")
    if not isinstance(sources, list) or not sources or \
            not all(isinstance(s, str) and s for s in sources):
        raise RegistryError(f"{where}.sources: must be a non-empty list of strings")
    token = entry.get("token_sha256")
    if token is not None and (not isinstance(token, str) or len(token) != 64):
        raise RegistryError(f"{where}.token_sha256: must be 64 hex digits")
    return Scorer(scorer_id, key, tuple(sources), token)


# -- signing and verifying --------------------------------------------------------------------

def generate_key() -> tuple[bytes, bytes]:
    """A new key pair: (private key as PKCS#8 PEM, public key as raw 32 bytes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return pem, raw


class Signer:
    """Signs encoded events as one scorer."""

    def __init__(self, scorer_id: str, private_pem: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if not SCORER_ID.match(scorer_id):
            raise ValueError(f"scorer id {scorer_id!r}: use 1-32 of a-z, 0-9 and '-'")
        key = load_pem_private_key(private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the scorer key is not an Ed25519 private key")
        self.scorer_id = scorer_id
        self._key = key

    def sign(self, body: bytes) -> bytes:
        """The wire bytes of ``body`` (an encoded event: a non-empty JSON object)."""
        if len(body) < 3 or body[:1] != b"{" or body[-1:] != b"}":
            raise ValueError("only an encoded event (a non-empty JSON object) can be signed")
        sig = _b64(self._key.sign(body)).encode()
        return body[:-1] + SIG_MEMBER + self.scorer_id.encode() + b":" + sig + b'"}'


def split(wire: bytes) -> tuple[str, bytes, bytes]:
    """``(scorer id, signature, signed body)`` of a signed event's wire bytes."""
    at = wire.rfind(SIG_MEMBER)
    if at < 1 or wire[-2:] != b'"}':
        raise SignatureError("unsigned: no trailing \"sig\" member")
    value = wire[at + len(SIG_MEMBER):-2]
    scorer, sep, sig = value.partition(b":")
    try:
        signature = _unb64(sig.decode("ascii"))
        scorer_id = scorer.decode("ascii")
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise SignatureError("malformed \"sig\" member") from None
    if not sep or len(signature) != SIG_BYTES or not SCORER_ID.match(scorer_id):
        raise SignatureError("malformed \"sig\": expected \"<scorer id>:<base64url of 64 "
                             "bytes>\"")
    return scorer_id, signature, wire[:at] + b"}"


def verify(wire: bytes, registry: Registry) -> tuple[Scorer, bytes]:
    """The scorer and the signed body of ``wire``; ``SignatureError`` says why not."""
    scorer_id, signature, body = split(wire)
    scorer = registry.get(scorer_id)
    if scorer is None:
        raise SignatureError(f"scorer {scorer_id!r} is not in the registry")
    if not scorer.verify(body, signature):
        raise SignatureError(f"signature of scorer {scorer_id!r} does not verify")
    return scorer, body
