"""Data in and out: import of public battle logs, exports (formats/, shards, dataset card)."""
