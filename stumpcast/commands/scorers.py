"""``stumpcast scorers add | list``: the scorer registry (who may sign which sources).

Adding a scorer makes its Ed25519 key, its ingest bearer token and its Kafka password in the
secrets folder (mode 0600; none is printed), adds it to the registry, and creates its Kafka
SCRAM user and ACL (write ``match.events`` only). Streams workers read the registry at start:
restart them (one at a time) to accept the new scorer's events.
"""

from __future__ import annotations

import argparse
from typing import Any

from schemas.settings import Settings


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from runtime.secrets import scorer_key_path, scorer_token_path
    from stumpcast.stack import provision, secrets
    from stumpcast.stack.errors import StackError
    from stumpcast.stack.probes import kafka_admin

    try:
        scorer = secrets.add_scorer(settings, args.scorer_id, args.source)
    except ValueError as exc:
        print(f"scorers add: {exc}")
        return 2
    print(f"scorer {scorer.id}: sources {', '.join(scorer.sources)}; key "
          f"{scorer_key_path(settings.secrets_dir, scorer.id)}, ingest token "
          f"{scorer_token_path(settings.secrets_dir, scorer.id)}")
    if settings.kafka_security == "sasl":
        from runtime.kafka import client_config
        from schemas.access import Principal

        try:
            users, acls = provision.kafka_access(
                kafka_admin(client_config(settings, Principal.ADMIN), 10.0), settings)
        except StackError as exc:
            print(f"scorers add: Kafka user not created ({exc}); run `stumpcast stack init` "
                  "once Kafka is up")
            return 1
        print(f"kafka: {users} SCRAM users, {acls} ACLs")
    print("restart the streams workers to load the registry")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    import hashlib

    from schemas.signing import Registry

    registry = Registry.load(settings.scorer_registry)
    for scorer in sorted(registry.scorers.values(), key=lambda s: s.id):
        fingerprint = hashlib.sha256(scorer.public_key).hexdigest()[:16]
        print(f"{scorer.id:<20} key {fingerprint}  sources {', '.join(scorer.sources)}"
              f"{'' if scorer.token_sha256 else '  (no ingest token)'}")
    return 0


def register(sub: Any, bench: Any) -> None:
    scorers = sub.add_parser("scorers", help="the scorer registry: add, list",
                             description="Scorers sign their events (Ed25519); the streams "
                             "worker accepts an event only with a valid signature by a "
                             "registered scorer that may claim the event's source.")
    cmds = scorers.add_subparsers(dest="scorers_command", metavar="ACTION")
    cmds.required = True
    p = cmds.add_parser("add", help="register a scorer (new key, token, Kafka user)",
                        description="Make a key pair, an ingest token and a Kafka password "
                        "for the scorer in STUMPCAST_SECRETS_DIR, register it with its source "
                        "patterns, and create its Kafka user and ACL. An existing id gets a "
                        "new key (rotation).")
    p.add_argument("scorer_id", help="1-32 of a-z, 0-9 and '-'")
    p.add_argument("--source", action="append", required=True,
                   help="a source pattern it may claim (fnmatch, e.g. scorer:desk); repeatable")
    p.set_defaults(func=cmd_add)
    p = cmds.add_parser("list", help="registered scorers, their sources and key fingerprints")
    p.set_defaults(func=cmd_list)
