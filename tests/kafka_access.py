"""Kafka access for the tests: the admin principal's client settings, and temporary ACLs.

The local stack requires SASL and ACLs (schemas.access). A test's own producers, consumers and
topics use the admin principal (its password is in the run folder's secrets); a test that runs
a service on topics of its own grants that service's principal access to them for the test's
duration (``granted``), as an operator would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.kafka import client_config, granted
from schemas.access import Grant, Op, Principal, Resource
from schemas.settings import Settings

__all__ = ["admin_config", "granted", "service_access"]


def admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {**client_config(settings, Principal.ADMIN), **extra}


def service_access(principal: str, read: Sequence[str] = (), write: Sequence[str] = (),
                   groups: Sequence[str] = ()) -> list[Grant]:
    """What ``principal`` needs to read ``read`` in ``groups`` and write ``write``."""
    return ([Grant(principal, Resource.TOPIC, t, Op.READ) for t in read]
            + [Grant(principal, Resource.TOPIC, t, Op.WRITE) for t in write]
            + [Grant(principal, Resource.GROUP, g, Op.READ) for g in groups])
