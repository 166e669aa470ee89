"""``stumpcast bench gateway``: load generator, reference writer and baselines."""
