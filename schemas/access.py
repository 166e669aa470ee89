"""Who may do what on Kafka: the principals and their ACLs, as data.

Every Kafka client of stumpcast authenticates (SASL/SCRAM-SHA-512) as one principal, and the
broker's ``StandardAuthorizer`` (KRaft) allows only what ``GRANTS`` lists; anything not listed
is denied (``allow.everyone.if.no.acl.found=false``). ``stumpcast stack init`` creates exactly
these ACLs, the security tests read them, and ``runtime.kafka.client_config(settings,
principal)`` is the one place a client picks its principal. Operations follow the Kafka docs'
"Operations and Resources on Protocols" table (../shared/reference/cluster.md §2.4): Read and
Write imply Describe; a consumer in a group needs Read on the group; a transactional producer
needs Write on its transactional id; since KIP-679 an idempotent producer needs only Write on
its topics.

The principals, one per role:

* ``admin``: the super user that provisions (topics, SCRAM users, ACLs) and the stack's
  inter-broker identity; also what tests use to create their own topics.
* ``streams``: the streams worker reads ``match.events`` and writes the derived topics, the
  dead-letter topic and its notification transactions.
* ``gateway``: writes viewers' heartbeats only.
* ``analytics``, ``notifier``, ``media``: read what their service reads, write what it writes.
* ``analyst``: reads the derived topics only (``stumpcast tail``, kcat).
* ``flags``: ``stumpcast flags`` and the degradation controller: reads and writes the flag
  changes (``stumpcast.flags``) only.
* ``scorer-<id>``: one per scorer of the registry (``schemas.signing``): writes
  ``match.events`` only. Which sources a scorer may claim is checked by signature, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.topology import (
    ANALYTICS_CONCURRENCY,
    FLAGS,
    FLAGS_GROUP_PREFIX,
    GROUP_ANALYTICS,
    GROUP_MEDIA_MARKERS,
    GROUP_NOTIFIER,
    GROUP_STREAMS,
    MATCH_EVENTS,
    MATCH_EVENTS_DLQ,
    MEDIA_SEGMENTS,
    NOTIFICATIONS,
    NOTIFY_RELAY,
    SCORECARDS,
    VIEWER_HEARTBEATS,
)


class Principal(StrEnum):
    ADMIN = "admin"
    STREAMS = "streams"
    GATEWAY = "gateway"
    ANALYTICS = "analytics"
    NOTIFIER = "notifier"
    MEDIA = "media"
    ANALYST = "analyst"
    FLAGS = "flags"


SCORER_PREFIX = "scorer-"
SCORER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# The notification relay's transactional ids (``stumpcast-notify-relay-{p}``) and its
# checkpoint reader's group share this prefix (streams/relay.py).
RELAY_PREFIX = "stumpcast-notify-relay"
# Consumer groups an analyst may use (``stumpcast tail`` makes one per run).
ANALYST_GROUP_PREFIX = "analyst-"


def scorer_principal(scorer_id: str) -> str:
    """The Kafka user of one scorer. Ids are lower-case letters, digits and dashes, so the
    name needs no SCRAM escaping (``=`` and ``,`` would)."""
    if not SCORER_ID.match(scorer_id):
        raise ValueError(f"scorer id {scorer_id!r}: use 1-32 of a-z, 0-9 and '-'")
    return f"{SCORER_PREFIX}{scorer_id}"


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional_id"


class Op(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Grant:
    principal: str
    resource: Resource
    name: str
    op: Op
    prefixed: bool = False


def _topics(principal: str, op: Op, *names: str) -> list[Grant]:
    return [Grant(principal, Resource.TOPIC, n, op) for n in names]


def _group(principal: str, name: str, prefixed: bool = False) -> Grant:
    return Grant(principal, Resource.GROUP, name, Op.READ, prefixed)


# Derived topics: what the pipeline computes, readable by an analyst. The dead-letter topic
# holds raw rejected input (possibly forged): operators read it as admin.
DERIVED_TOPICS = (NOTIFICATIONS.name, SCORECARDS.name, ANALYTICS_CONCURRENCY.name,
                  MEDIA_SEGMENTS.name)


def service_grants() -> list[Grant]:
    """The ACLs of every service principal (scorers: ``scorer_grants``)."""
    s, g, a, n, m, x, f = (Principal.STREAMS, Principal.GATEWAY, Principal.ANALYTICS,
                           Principal.NOTIFIER, Principal.MEDIA, Principal.ANALYST,
                           Principal.FLAGS)
    return [
        *_topics(s, Op.READ, MATCH_EVENTS.name, NOTIFY_RELAY.name),
        _group(s, GROUP_STREAMS),
        *_topics(s, Op.WRITE, MATCH_EVENTS_DLQ.name, SCORECARDS.name, NOTIFICATIONS.name,
                 NOTIFY_RELAY.name),
        Grant(s, Resource.TRANSACTIONAL_ID, RELAY_PREFIX, Op.WRITE, prefixed=True),
        _group(s, RELAY_PREFIX, prefixed=True),
        *_topics(g, Op.WRITE, VIEWER_HEARTBEATS.name),
        *_topics(a, Op.READ, VIEWER_HEARTBEATS.name),
        _group(a, GROUP_ANALYTICS),
        *_topics(a, Op.WRITE, ANALYTICS_CONCURRENCY.name),
        *_topics(n, Op.READ, NOTIFICATIONS.name),
        _group(n, GROUP_NOTIFIER),
        *_topics(m, Op.READ, NOTIFICATIONS.name),
        _group(m, GROUP_MEDIA_MARKERS, prefixed=True),
        *_topics(m, Op.WRITE, MEDIA_SEGMENTS.name),
        *_topics(x, Op.READ, *DERIVED_TOPICS),
        _group(x, ANALYST_GROUP_PREFIX, prefixed=True),
        *_topics(f, Op.READ, FLAGS.name),
        *_topics(f, Op.WRITE, FLAGS.name),
        _group(f, FLAGS_GROUP_PREFIX, prefixed=True),
    ]


def scorer_grants(scorer_id: str) -> list[Grant]:
    return _topics(scorer_principal(scorer_id), Op.WRITE, MATCH_EVENTS.name)
