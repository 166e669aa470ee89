"""What to do with one notification for one webhook subscriber: a pure decision.

Ids make delivery idempotent: a notification already recorded as delivered to this subscriber
is skipped, so a Kafka redelivery (restart, rebalance) never reaches the receiver twice after a
success. Retractions (``schemas.notifications.retraction``) are honoured: an original whose
retraction was seen before it went out is dropped, and a retraction of something this
subscriber never received is dropped too (there is nothing to take back).
"""

from __future__ import annotations

from enum import StrEnum

from schemas.notifications import Kind, Notification


class Action(StrEnum):
    SEND = "send"
    HOLD = "hold"                            # no spoilers: wait for the playhead
    SKIP_DUPLICATE = "skip_duplicate"        # delivered before (by id)
    SKIP_RETRACTED = "skip_retracted"        # withdrawn before it went out
    SKIP_ORPHAN_RETRACTION = "skip_orphan_retraction"   # its original never went out


def decide(note: Notification, *, delivered: bool, retracted: bool, original_delivered: bool,
           no_spoilers: bool, released: bool) -> Action:
    """``delivered``: this id was delivered to this subscriber; ``retracted``: a retraction of
    this id was seen; ``original_delivered``: (retractions) the retracted id was delivered;
    ``released``: the spoiler hold already let this one go."""
    if delivered:
        return Action.SKIP_DUPLICATE
    if note.kind is Kind.RETRACTION:
        if not original_delivered:
            return Action.SKIP_ORPHAN_RETRACTION
    elif retracted:
        return Action.SKIP_RETRACTED
    if no_spoilers and not released:
        return Action.HOLD
    return Action.SEND
