"""Many recorded drives at once: replay, evaluate and mine bags or frames as shards, in this
process or on a Ray cluster (one `Pipeline` per worker, Ray's retries on worker loss)."""
