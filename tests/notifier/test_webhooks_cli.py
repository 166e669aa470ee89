"""`stumpcast webhooks ...` against real Redis."""

from __future__ import annotations

import uuid

import pytest

from runtime.redisconn import sync_redis
from schemas.store_access import RedisUser
from stumpcast.cli import main


@pytest.mark.stack
def test_webhooks_cli_add_list_remove(redis_stack, capsys, monkeypatch):
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    monkeypatch.setenv("STUMPCAST_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    monkeypatch.setenv("STUMPCAST_WEBHOOK_SECRET", "s")
    assert main(["webhooks", "add", url, "--match", "m1", "--no-spoilers",
                 "--session", "sess-1"]) == 0
    hook_id = capsys.readouterr().out.strip()
    assert main(["webhooks", "list"]) == 0
    assert f"{hook_id}  {url}  match=m1 no-spoilers session=sess-1" in capsys.readouterr().out
    assert main(["webhooks", "remove", hook_id]) == 0
    assert main(["webhooks", "remove", hook_id]) == 1
    assert main(["webhooks", "add", url, "--no-spoilers"]) == 2


@pytest.mark.parametrize("argv, env, said", [
    (["--secret", "s"], {"STUMPCAST_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}, "never on the command"),
    ([], {"STUMPCAST_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}, "no secret"),
    ([], {"STUMPCAST_WEBHOOK_SECRET": "s"}, "loopback"),  # no allow-list: 127.0.0.1 refused
])
def test_webhooks_add_refuses_argv_secrets_and_internal_targets(argv, env, said, capsys,
                                                                monkeypatch):
    monkeypatch.delenv("STUMPCAST_WEBHOOK_SECRET", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["webhooks", "add", "http://127.0.0.1:9/hook", *argv]) == 2
    assert said in capsys.readouterr().err


def test_webhooks_add_reads_the_secret_from_stdin(redis_stack, capsys, monkeypatch):
    import io

    from notifier.subscriptions import load_all
    from schemas.topology import RedisKeys

    monkeypatch.setenv("STUMPCAST_WEBHOOK_ALLOW_HOSTS", "127.0.0.0/8")
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    assert main(["webhooks", "add", url, "--secret-stdin"]) == 0
    hook_id = capsys.readouterr().out.strip()
    r = sync_redis(redis_stack, RedisUser.ADMIN)
    assert load_all(r.hgetall(RedisKeys.webhooks))[hook_id].secret == "from-stdin"
    assert main(["webhooks", "remove", hook_id]) == 0
