"""The staff console: actions, queries, statistics and charts."""
