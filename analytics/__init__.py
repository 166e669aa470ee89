"""Viewer analytics: heartbeats -> concurrency, views and quality per match, region and CDN.

``window`` and ``hll`` are the pure core (no I/O, no clock); ``aggregate`` orchestrates one
worker's partitions, still pure; ``worker`` is the Kafka/Redis shell.
"""
