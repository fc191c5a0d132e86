"""The contract pieces end to end: ticket push -> inbox -> ticket custody -> component token."""

from sqlalchemy import func, select

from app.extensions import db
from app.models import InboxEvent, VerifyTicket
from app.services.platform import credentials


def test_ticket_push_is_stored_and_mints_the_first_token(sandbox, live_portal):
    ticket = sandbox.push_ticket()
    sandbox.flush()
    delivery = sandbox.deliveries("component_verify_ticket")[-1]
    assert delivery["attempts"][-1]["reply"] == "success"

    assert live_portal.call(credentials.current_ticket) == ticket
    token = live_portal.call(credentials.component_access_token)
    assert token and sandbox.api_calls()["api_component_token"] == 1
    assert live_portal.call(credentials.component_access_token) == token
    assert sandbox.api_calls()["api_component_token"] == 1
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(InboxEvent)) == 1
    assert db.session.scalar(select(VerifyTicket.pushes)) == 1
