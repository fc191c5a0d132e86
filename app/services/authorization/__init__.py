"""Authorizations: sessions, consent, grants, authorizers, purge, reconciliation, attention."""
