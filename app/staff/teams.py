"""Staff view of any merchant's team: resend or withdraw invitations, change roles, remove.

Every staff member reads the team on the merchant page; only administrators manage it."""

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.auth.access import require_staff_role
from app.extensions import db
from app.merchant.forms import MemberRoleForm
from app.models import Merchant, User
from app.services.access import teams
from app.staff.forms import ConfirmForm, require_confirmation

bp = Blueprint("teams", __name__)


def urls_for(merchant_id: int) -> dict:
    """What the shared team macros need to build this merchant's staff links."""
    return {"prefix": "staff.teams.", "values": {"merchant_id": merchant_id}}


def _back(merchant_id: int):
    return redirect(url_for("staff.merchant", merchant_id=merchant_id), code=303)


@bp.get("")
@require_staff_role("viewer")
def index(merchant_id: int):
    """The team lives on the merchant page."""
    return _back(merchant_id)


@bp.post("/invitations/<int:invitation_id>/resend")
@require_staff_role("admin")
def resend(merchant_id: int, invitation_id: int):
    """Send a merchant's pending invitation again, valid for another full period."""
    db.get_or_404(Merchant, merchant_id)
    require_confirmation()
    try:
        sent = teams.resend(merchant_id, invitation_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    if sent.emailed:
        email = sent.invitation.email
        flash(_("The invitation was sent again to %(email)s.", email=email), "success")
    else:
        flash(_("The invitation is valid again; copy its link below."), "success")
    return _back(merchant_id)


@bp.post("/invitations/<int:invitation_id>/revoke")
@require_staff_role("admin")
def revoke(merchant_id: int, invitation_id: int):
    """Withdraw a merchant's pending invitation."""
    db.get_or_404(Merchant, merchant_id)
    require_confirmation()
    try:
        teams.revoke(merchant_id, invitation_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    flash(_("The invitation was withdrawn; its link no longer works."), "success")
    return _back(merchant_id)


@bp.post("/members/<int:user_id>/role")
@require_staff_role("admin")
def change_role(merchant_id: int, user_id: int):
    """Make a merchant's member administrator or viewer (the last administrator stays)."""
    form = MemberRoleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        teams.change_role(merchant_id, user_id, form.role.data, actor=current_user)
    except teams.NotFound:
        abort(404)
    except teams.LastAdmin:
        flash(_("A merchant needs at least one administrator."), "error")
        return _back(merchant_id)
    flash(_("The role was changed."), "success")
    return _back(merchant_id)


@bp.get("/members/<int:user_id>/remove")
@require_staff_role("admin")
def confirm_remove(merchant_id: int, user_id: int):
    """Confirmation page before removing a member."""
    member = db.get_or_404(User, user_id)
    if member.merchant_id != merchant_id:
        abort(404)
    return render_template(
        "merchant/team_remove.html", member=member, form=ConfirmForm(), urls=urls_for(merchant_id)
    )


@bp.post("/members/<int:user_id>/remove")
@require_staff_role("admin")
def remove(merchant_id: int, user_id: int):
    """Remove a member from a merchant (never the last administrator)."""
    require_confirmation()
    try:
        teams.remove(merchant_id, user_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    except teams.LastAdmin:
        flash(_("A merchant needs at least one administrator."), "error")
        return _back(merchant_id)
    flash(_("The member was removed."), "success")
    return _back(merchant_id)
