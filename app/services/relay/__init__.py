"""The message relay (issue #15): every authorized account's messages to the provider's services.

routes.py   relay routes: create, edit, pause, delete; which routes a message matches
inbound.py  the message URL's path: verify, dedupe, store, reply pass-through within the budget
outbox.py   async deliveries: ordered per (route, account), retried with backoff, then dead
retention.py  payloads kept RELAY_RETENTION_HOURS; an account's messages purged with it
stats.py    what the console shows per route and account (counts and timings, never content)
formats.py  the wire formats (wechat-xml, json): the request sent and the reply read
"""
