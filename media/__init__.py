"""The co-located media worker: live ingest, an ABR HLS ladder, and video in sync with events."""
