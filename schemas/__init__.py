"""The shared contract of stumpcast.

Every boundary of the system is defined here once: match events and their codec, the scorecard
document, the wire protocol, media events, Kafka topics, Cassandra tables and Redis keys, and the
settings every service reads from the environment. This package imports nothing from
``streams``, ``gateway`` or ``media``; they all import it.
"""
