"""Staff notes on a merchant or an account: plain text, newest first, gone with the account."""

from sqlalchemy import select

from app.extensions import db
from app.models import StaffNote, User
from app.services import DomainError, audit, clock

MAX_NOTE = 2000


class InvalidNote(DomainError):
    code = "invalid_note"


def add_note(
    author: User, body: str, *, merchant_id: int | None = None, authorizer_id: int | None = None
) -> StaffNote:
    """Keep a note; exactly one of merchant_id / authorizer_id. The audit says who, not what."""
    text = (body or "").strip()
    if not text or len(text) > MAX_NOTE or (merchant_id is None) == (authorizer_id is None):
        raise InvalidNote()
    note = StaffNote(
        merchant_id=merchant_id, authorizer_id=authorizer_id, author_id=author.id,
        author=author.name or author.email, body=text, created_at=clock.now(),
    )  # fmt: skip
    db.session.add(note)
    db.session.flush()
    audit.record(
        "staff.note_added", actor=author, merchant_id=merchant_id, target_type="staff_note",
        target_id=note.id, on="merchant" if merchant_id else "authorizer",
    )  # fmt: skip
    db.session.commit()
    return note


def notes_for(*, merchant_id: int | None = None, authorizer_id: int | None = None):
    """Notes on one merchant or one account, newest first."""
    column = StaffNote.merchant_id if merchant_id is not None else StaffNote.authorizer_id
    value = merchant_id if merchant_id is not None else authorizer_id
    query = select(StaffNote).where(column == value)
    query = query.order_by(StaffNote.created_at.desc(), StaffNote.id.desc())
    return list(db.session.scalars(query))
