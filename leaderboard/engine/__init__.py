"""The rating engine: pure math on arrays (Bradley-Terry, Elo, intervals, style control, dedup,
anomaly tests, coverage, topics). No Django here: import-linter keeps it so (`make lint`)."""
