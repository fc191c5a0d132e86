"""The WeChat Open Platform protocol as a plain library (no Flask, SQLAlchemy or app imports).

Modules: crypto (§1), events (§2), client + results (§3), links (§4), permissions (§5),
errors (§1.8, §6), release (full-release check accounts and replies).
"""
