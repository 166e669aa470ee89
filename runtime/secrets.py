"""Where credentials live in the secrets folder, and reading them.

::

    <STUMPCAST_SECRETS_DIR>/          mode 0700 (default <STUMPCAST_RUN_DIR>/secrets)
      kafka/<principal>.password      0600  SASL password of one Kafka principal
      redis/<user>.password           0600  password of one Redis ACL user
      cassandra/<role>.password       0600  password of one Cassandra role
      scorers/<id>.key                0600  a scorer's Ed25519 private key (PKCS#8 PEM)
      scorers/<id>.token              0600  a scorer's bearer token for the ingest API
      gateway/session.key             0600  HMAC key of the session ids the gateway issues
      scorers.json                    0600  the scorer registry (public keys, sources, token
                                            hashes; STUMPCAST_SCORER_REGISTRY)

``stumpcast stack up`` generates what is missing for the local stack (``stumpcast.stack.
secrets``); elsewhere each service is given only its own files. Nothing here prints a secret.
"""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings
from schemas.signing import Registry, Signer


class SecretMissing(RuntimeError):
    """A credential file that is not there; the message names it and how to make it."""


def password_path(secrets_dir: Path, principal: str) -> Path:
    return secrets_dir / "kafka" / f"{principal}.password"


def redis_password_path(secrets_dir: Path, user: str) -> Path:
    return secrets_dir / "redis" / f"{user}.password"


def cassandra_password_path(secrets_dir: Path, role: str) -> Path:
    return secrets_dir / "cassandra" / f"{role}.password"


def scorer_key_path(secrets_dir: Path, scorer_id: str) -> Path:
    return secrets_dir / "scorers" / f"{scorer_id}.key"


def scorer_token_path(secrets_dir: Path, scorer_id: str) -> Path:
    return secrets_dir / "scorers" / f"{scorer_id}.token"


def gateway_session_key_path(secrets_dir: Path) -> Path:
    """The HMAC key of the viewer session ids the gateway issues (shared by its workers)."""
    return secrets_dir / "gateway" / "session.key"


def read_secret(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        raise SecretMissing(
            f"no {what} ({path} is missing): `stumpcast stack up` generates the local "
            "stack's credentials; elsewhere mount them there or set STUMPCAST_SECRETS_DIR"
        ) from None
    if not data:
        raise SecretMissing(f"{path} is empty")
    return data


def signer(settings: Settings, scorer_id: str) -> Signer:
    """Sign as ``scorer_id`` with its key from the secrets folder."""
    return Signer(scorer_id, read_secret(scorer_key_path(settings.secrets_dir, scorer_id),
                                         f"signing key for scorer {scorer_id!r}"))


def scorer_for_source(settings: Settings, registry: Registry, source: str) -> str | None:
    """A scorer whose key this machine holds and that may claim ``source`` (the first by id),
    so ``stumpcast produce`` signs without being told which key to use."""
    for scorer_id in sorted(registry.scorers):
        scorer = registry.scorers[scorer_id]
        if scorer.allows(source) and scorer_key_path(settings.secrets_dir, scorer_id).exists():
            return scorer_id
    return None
