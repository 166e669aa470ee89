"""Worker replicas as real processes for the replica stack tests: ``bench.replicas`` (shared
with ``stumpcast chaos``)."""

from bench.replicas import Replica, free_port

__all__ = ["Replica", "free_port"]
