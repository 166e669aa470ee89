"""`stumpcast webhooks ...` against real Redis."""

from __future__ import annotations

import uuid

import pytest

from stumpcast.cli import main


@pytest.mark.stack
def test_webhooks_cli_add_list_remove(redis_stack, capsys):
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    assert main(["webhooks", "add", url, "--secret", "s", "--match", "m1", "--no-spoilers",
                 "--session", "sess-1"]) == 0
    hook_id = capsys.readouterr().out.strip()
    assert main(["webhooks", "list"]) == 0
    assert f"{hook_id}  {url}  match=m1 no-spoilers session=sess-1" in capsys.readouterr().out
    assert main(["webhooks", "remove", hook_id]) == 0
    assert main(["webhooks", "remove", hook_id]) == 1
    assert main(["webhooks", "add", url, "--secret", "s", "--no-spoilers"]) == 2
