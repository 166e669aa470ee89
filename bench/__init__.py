"""Every benchmark: commands that print figures and append them to BENCHMARKS.md.

``stumpcast bench <what>`` (``stumpcast.commands``) calls into these modules; nothing else
imports them. A benchmark drives the services from outside (their processes, their stores,
their public modules); no service imports ``bench``. ``log`` keeps the figures: percentiles,
medians and the BENCHMARKS.md record with date, commit and machine.
"""
