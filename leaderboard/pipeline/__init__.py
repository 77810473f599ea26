"""From votes to snapshots: valid votes into arrays in SQL, categories, voter flags, integrity,
prompt vectors, the snapshot job, and the sampling plan computed from the same counts."""
