"""Notification delivery: ``match.notifications`` -> signed webhooks, retried, idempotent.

Pure cores: ``signing`` (HMAC-SHA256 headers), ``retry`` (exponential backoff, full jitter,
dead-letter), ``spoiler`` (hold until the viewer's playhead reaches the ball), ``routing``
(what to do with one notification for one subscriber), ``tracker`` (which Kafka offsets are
safe to commit). Shells: ``subscriptions`` (Redis), ``notifier`` (aiokafka + aiohttp).
"""
