"""The leaderboard's pages and JSON API: selectors that read snapshots, views, SVG plots, urls."""
