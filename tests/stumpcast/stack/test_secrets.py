"""The local stack's credentials: generated once, private, never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runtime.kafka import aiokafka_config, client_config
from runtime.secrets import SecretMissing, password_path, scorer_key_path, signer
from schemas.access import Principal, scorer_principal
from schemas.settings import Settings
from schemas.signing import Registry
from stumpcast.stack import secrets


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"STUMPCAST_RUN_DIR": str(tmp_path / "run"), **env})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_generates_every_credential_private_and_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = secrets.ensure(settings)
    root = settings.secrets_dir
    assert root == tmp_path / "run" / "secrets" and _mode(root) == 0o700
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and all(_mode(p) == 0o600 for p in files)
    for principal in Principal:
        assert len(password_path(root, principal).read_text()) >= 32
    registry = Registry.load(settings.scorer_registry)
    assert set(registry.scorers) == {"cricsheet", "desk"}
    assert registry.scorers["cricsheet"].allows("cricsheet")
    assert not registry.scorers["desk"].allows("cricsheet")
    before = {p: p.read_bytes() for p in files}
    assert secrets.ensure(settings) == first  # a second run changes nothing
    assert {p: p.read_bytes() for p in files} == before


def test_client_configs_carry_the_principal_and_its_password(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    secrets.ensure(settings)
    conf = client_config(settings, Principal.GATEWAY)
    assert conf["sasl.username"] == "gateway" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == password_path(settings.secrets_dir, "gateway").read_text()
    assert client_config(settings, Principal.ADMIN)["sasl.mechanism"] == "PLAIN"
    aio = aiokafka_config(settings, Principal.NOTIFIER)
    assert aio["sasl_plain_username"] == "notifier"
    off = _settings(tmp_path, STUMPCAST_KAFKA_SECURITY="plaintext")
    assert client_config(off, Principal.GATEWAY) == {"bootstrap.servers": "127.0.0.1:19092"}


def test_a_missing_password_names_the_file_and_the_fix(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(SecretMissing, match=r"gateway\.password.*stack up"):
        client_config(settings, Principal.GATEWAY)


def test_add_scorer_signs_with_a_key_the_registry_verifies(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    secrets.ensure(settings)
    scorer = secrets.add_scorer(settings, "north-end", ["scorer:north-end"])
    registry = Registry.load(settings.scorer_registry)
    assert registry.get("north-end") == scorer and "desk" in registry.scorers
    assert _mode(scorer_key_path(settings.secrets_dir, "north-end")) == 0o600
    assert scorer_principal("north-end") in secrets.kafka_users(settings)
    wire = signer(settings, "north-end").sign(b'{"a":1}')
    from schemas.signing import verify

    assert verify(wire, registry) == (scorer, b'{"a":1}')
    with pytest.raises(ValueError, match="scorer id"):
        secrets.add_scorer(settings, "Bad Id", ["x"])
