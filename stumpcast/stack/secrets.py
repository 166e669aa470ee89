"""Generate the local stack's credentials into the secrets folder, never overwriting one.

``ensure(settings)`` makes whatever is missing (runtime/secrets.py has the layout): a random
password per Kafka principal (and the controller's, which only the broker's own config knows),
the default scorers' Ed25519 keys and ingest tokens, and the scorer registry. Files are created
with mode 0600 in a 0700 folder, with ``O_EXCL`` so two commands at once cannot both write one;
the values are never printed. Each Redis ACL user and Cassandra role (``schemas.store_access``)
gets a password the same way; ``write_redis_acl`` renders the Redis ACL file. ``add_scorer``
registers one more scorer (``stumpcast scorers add``). Passwords are URL-safe alphanumerics:
SCRAM's bracket syntax and JAAS quoting need no escaping then (../shared/reference/cluster.md §2.2).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.secrets import (
    cassandra_password_path,
    gateway_session_key_path,
    password_path,
    redis_password_path,
    scorer_key_path,
    scorer_token_path,
)
from schemas.access import Principal, scorer_principal
from schemas.settings import Settings
from schemas.signing import Registry, RegistryError, Scorer, generate_key, token_hash
from schemas.store_access import (
    REDIS_DEFAULT_OFF,
    CassandraRole,
    RedisUser,
    redis_acl_rule,
)

CONTROLLER = "controller"  # the KRaft controller listener's PLAIN user (broker config only)
# The scorers every local stack has: the Cricsheet importer (`stumpcast replay`, the demo) and
# a scorers' desk (`stumpcast produce` of hand-made events, the ingest API).
DEFAULT_SCORERS: dict[str, tuple[str, ...]] = {"cricsheet": ("cricsheet",),
                                               "desk": ("scorer:desk",)}


def _password() -> str:
    return secrets.token_hex(24)


def write_private(path: Path, data: bytes) -> bool:
    """Create ``path`` with mode 0600 unless it exists; True if written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def replace_private(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) atomically, replacing it: the registry grows by whole files."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_private(tmp, data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class StackSecrets:
    admin_password: str
    controller_password: str


def ensure(settings: Settings) -> StackSecrets:
    """Every missing credential of the local stack, generated; returns the broker's own."""
    root = settings.secrets_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    for principal in [*Principal, CONTROLLER]:
        write_private(password_path(root, principal), _password().encode())
    # Redis and Cassandra users too: a run folder from before they existed gets them here.
    for user in RedisUser:
        write_private(redis_password_path(root, user), _password().encode())
    for role in CassandraRole:
        write_private(cassandra_password_path(root, role), _password().encode())
    write_private(gateway_session_key_path(root), secrets.token_hex(32).encode())
    for scorer_id, sources in DEFAULT_SCORERS.items():
        if not scorer_key_path(root, scorer_id).exists():
            add_scorer(settings, scorer_id, sources)
    return StackSecrets(password_path(root, Principal.ADMIN).read_text().strip(),
                        password_path(root, CONTROLLER).read_text().strip())


def load_registry(settings: Settings) -> Registry:
    try:
        return Registry.load(settings.scorer_registry)
    except RegistryError:
        if settings.scorer_registry.exists():
            raise
        return Registry()


def add_scorer(settings: Settings, scorer_id: str, sources: Sequence[str]) -> Scorer:
    """A new key pair, ingest token and Kafka password for ``scorer_id``; the registry entry
    added (or replaced: a new key for an existing id rotates it)."""
    principal = scorer_principal(scorer_id)  # validates the id
    if not sources:
        raise ValueError("a scorer needs at least one source pattern")
    root = settings.secrets_dir
    pem, public = generate_key()
    key_path, token_path = scorer_key_path(root, scorer_id), scorer_token_path(root, scorer_id)
    for path in (key_path, token_path):
        path.unlink(missing_ok=True)
    write_private(key_path, pem)
    token = secrets.token_urlsafe(32)
    write_private(token_path, token.encode())
    write_private(password_path(root, principal), _password().encode())
    scorer = Scorer(scorer_id, public, tuple(sources), token_hash(token))
    replace_private(settings.scorer_registry, load_registry(settings).with_scorer(scorer).encode())
    return scorer


def kafka_users(settings: Settings) -> dict[str, str]:
    """SCRAM users to create on the broker: every principal but admin (defined by the broker
    itself), and every registered scorer whose password is here."""
    root = settings.secrets_dir
    names = [p.value for p in Principal if p is not Principal.ADMIN]
    names += [scorer_principal(s) for s in sorted(load_registry(settings).scorers)]
    return {n: password_path(root, n).read_text().strip() for n in names
            if password_path(root, n).exists()}


def write_redis_acl(settings: Settings, path: Path) -> int:
    """The local Redis's ACL file (0600, rewritten at every start so a regenerated password or
    a changed rule takes effect): ``default`` off, one user per ``RedisUser`` with its rules
    (``schemas.store_access``). Passwords are stored as SHA-256 hashes. Returns the users."""
    lines = [REDIS_DEFAULT_OFF]
    for user in RedisUser:
        password = redis_password_path(settings.secrets_dir, user).read_bytes().strip()
        lines.append(redis_acl_rule(user, hashlib.sha256(password).hexdigest()))
    replace_private(path, ("\n".join(lines) + "\n").encode())
    return len(lines) - 1
