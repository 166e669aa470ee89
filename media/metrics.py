"""The media worker's Prometheus metrics, in their own registry (no import-time globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class MediaMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.encode_speed = Gauge("stumpcast_media_encode_speed",
                                  "Frames encoded per wall second over the source frame rate "
                                  "(x real time).", registry=r)
        self.publish_delay = Histogram(
            "stumpcast_media_publish_delay_seconds",
            "Playlist published minus the segment's last captured instant.", registry=r,
            buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0, 5.0))
        self.pdt_drift = Gauge("stumpcast_media_pdt_drift_seconds",
                               "Wall clock minus the encoder's PDT timeline (anchor + out_time).",
                               registry=r)
        self.segments = Counter("stumpcast_media_segments_published",
                                "Segments published, per rendition.", ["rendition"], registry=r)
        self.errors = Counter("stumpcast_media_errors", "Errors, by kind.", ["kind"], registry=r)
        self.restarts = Counter("stumpcast_media_ffmpeg_restarts",
                                "ffmpeg launches that ended, by reason.", ["reason"], registry=r)
        self.ladder_steps = Counter("stumpcast_media_ladder_steps",
                                    "Speed-guard steps (faster preset or a dropped rung).",
                                    registry=r)
        self.markers = Counter("stumpcast_media_markers", "Markers received from Kafka.",
                               registry=r)
        self.ll_blocked = Gauge("stumpcast_media_ll_blocked",
                                "LL-HLS blocking playlist requests held now.", registry=r)
        self.ll_refused = Counter("stumpcast_media_ll_refused",
                                  "LL-HLS requests answered with an error, by status (400: bad "
                                  "directive, 503: over the bound or timed out).", ["status"],
                                  registry=r)
