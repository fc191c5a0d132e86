"""Staff console: notes on merchants and accounts, and the open attention items of one kind."""

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from app.auth.access import require_staff_role
from app.extensions import db
from app.htmx import render
from app.models import Authorizer, Merchant
from app.services.console import notes, queries, stats
from app.services.platform import platforms

bp = Blueprint("notes", __name__)


class NoteForm(FlaskForm):
    body = TextAreaField(
        _l("Add a note"),
        validators=[
            DataRequired(message=_l("Write the note first.")),
            Length(max=notes.MAX_NOTE, message=_l("Keep the note under 2,000 characters.")),
        ],
    )


@bp.app_template_global()
def staff_notes(*, merchant_id=None, authorizer_id=None) -> dict:
    """Notes and an empty form for a merchant or account page."""
    return {
        "items": notes.notes_for(merchant_id=merchant_id, authorizer_id=authorizer_id),
        "form": NoteForm(formdata=None),
    }


@bp.post("/merchants/<int:merchant_id>/notes")
@require_staff_role("operator")
def add_merchant_note(merchant_id: int):
    """Keep a note on a merchant."""
    db.get_or_404(Merchant, merchant_id)
    return _add(url_for("staff.merchant", merchant_id=merchant_id), merchant_id=merchant_id)


@bp.post("/accounts/<int:authorizer_id>/notes")
@require_staff_role("operator")
def add_account_note(authorizer_id: int):
    """Keep a note on an account."""
    db.get_or_404(Authorizer, authorizer_id)
    url = url_for("staff.accounts.detail", authorizer_id=authorizer_id)
    return _add(url, authorizer_id=authorizer_id)


def _add(back: str, **target):
    form = NoteForm()
    if not form.validate_on_submit():
        for error in form.body.errors or [_("Write the note first.")]:
            flash(error, "error")
        return redirect(back + "#notes", code=303)
    notes.add_note(current_user, form.body.data, **target)
    flash(_("Note saved."), "success")
    return redirect(back + "#notes", code=303)


@bp.get("/attention")
@require_staff_role("viewer")
def attention_items():
    """Open attention items, optionally of one kind (the overview's categories link here)."""
    kind = request.args.get("kind", "")
    platform = stats.platform_filter(request.args.get("platform"))
    items = queries.open_attention_items(kind, platform)
    return render(
        "staff/attention.html", items=items, kind=kind, platform=platform,
        platform_names=platforms.names(),
    )  # fmt: skip
