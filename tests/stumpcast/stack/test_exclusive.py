"""`stack up` and `stack down` take the run folder one at a time (two `up` at once broke Kafka)."""

from __future__ import annotations

import threading
import time

from stumpcast.stack.control import exclusive


def test_a_second_stack_command_waits_for_the_first(tmp_path):
    said: list[str] = []
    order: list[str] = []

    def second() -> None:
        with exclusive(tmp_path, said.append):
            order.append("second")

    with exclusive(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]
    assert said == [f"waiting for another stack command on {tmp_path}"]


def test_an_uncontended_command_says_nothing(tmp_path):
    said: list[str] = []
    with exclusive(tmp_path / "new", said.append):
        pass
    with exclusive(tmp_path / "new", said.append):
        pass
    assert said == []
