"""Relay rows for console tests: routes, messages and deliveries as the relay stores them."""

import hashlib
import itertools
from datetime import timedelta

from app.extensions import db
from app.models import RelayDelivery, RelayMessage, RelayRoute
from app.services import clock

_seq = itertools.count(1)


def make_route(**overrides) -> RelayRoute:
    n = next(_seq)
    route = RelayRoute(
        **{
            "name": f"Route {n}",
            "url": f"https://crm.example.com/wechat/{n}?key=query-secret-{n}",
            "format": "wechat-xml",
            "mode": "async",
            "token": f"token{n}",
            "msg_types": [],
            **overrides,
        }
    )
    db.session.add(route)
    db.session.commit()
    return route


def make_delivery(route, account, *, status="delivered", duration_ms=None, msg_type="text",
                  age=timedelta(0), **overrides) -> RelayDelivery:  # fmt: skip
    """A message of `account` and its delivery to `route` (committed)."""
    n = next(_seq)
    at = clock.now() - age
    message = RelayMessage(
        authorizer_id=account.id,
        dedupe_key=hashlib.sha256(f"console-test:{n}".encode()).hexdigest(),
        msg_type=msg_type,
        create_time=1700000000 + n,
        received_at=at,
        payload=f"<xml><Content>private words {n}</Content></xml>",
    )
    delivery = RelayDelivery(
        message=message, route_id=route.id, authorizer_id=account.id, mode=route.mode,
        create_time=message.create_time, status=status, duration_ms=duration_ms,
        created_at=at, next_attempt_at=at, **overrides,
    )  # fmt: skip
    db.session.add_all([message, delivery])
    db.session.commit()
    return delivery
