"""The merchant's team: members and pending invitations; administrators invite and manage."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.merchant.forms import ConfirmForm, MemberRoleForm, TeamInviteForm
from app.services import accounts, clock
from app.services.access import teams

bp = Blueprint("team", __name__)

# Endpoint prefix and extra URL values the shared team macros build links with.
URLS = {"prefix": "merchant.team.", "values": {}}


def _merchant_id() -> int:
    return current_user.merchant_id


def render_team(invite_form=None, sent=None, status: int = 200):
    """The team page (also after an invitation, with its link when mail is off)."""
    merchant_id = _merchant_id()
    page = render_template(
        "merchant/team.html",
        members=teams.members(merchant_id),
        invitations=teams.pending_invitations(merchant_id),
        links=_links(merchant_id),
        invite_form=invite_form or TeamInviteForm(formdata=None),
        now=clock.now(),
        confirm_form=ConfirmForm(),
        sent=sent,
        urls=URLS,
        manage=current_user.is_merchant_admin,
    )
    return page, status


def _links(merchant_id: int) -> dict:
    if not current_user.is_merchant_admin:  # viewers see who is invited, not the links
        return {}
    pending = teams.pending_invitations(merchant_id)
    return {i.id: teams.copy_link(merchant_id, i.id) for i in pending}


def _back(sent=None):
    sent_id = sent.invitation.id if sent is not None else None
    return redirect(url_for("merchant.team.index", sent=sent_id), code=303)


@bp.get("")
def index():
    """Members and pending invitations of my merchant (after an invitation: its link)."""
    sent_id = request.args.get("sent", type=int)
    sent = None
    if sent_id and current_user.is_merchant_admin:
        sent = teams.sent_invitation(_merchant_id(), sent_id)
    return render_team(sent=sent)


@bp.post("/invitations")
def invite():
    """Invite a colleague as administrator or viewer (emailed, and the link shown)."""
    form = TeamInviteForm()
    if not form.validate_on_submit():
        return render_team(invite_form=form, status=422)
    try:
        sent = teams.invite(current_user.merchant, form.email.data, form.role.data,
                            actor=current_user)  # fmt: skip
    except accounts.EmailTaken:
        form.email.errors.append(_("An account with this email already exists."))
        return render_team(invite_form=form, status=422)
    return _back(sent)


@bp.post("/invitations/<int:invitation_id>/resend")
def resend(invitation_id: int):
    """Send a pending invitation again, valid for another full period."""
    _confirmed()
    try:
        sent = teams.resend(_merchant_id(), invitation_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    return _back(sent)


@bp.post("/invitations/<int:invitation_id>/revoke")
def revoke(invitation_id: int):
    """Withdraw a pending invitation."""
    _confirmed()
    try:
        teams.revoke(_merchant_id(), invitation_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    flash(_("The invitation was withdrawn; its link no longer works."), "success")
    return _back()


@bp.post("/members/<int:user_id>/role")
def change_role(user_id: int):
    """Make a member administrator or viewer (never the last administrator a viewer)."""
    form = MemberRoleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        teams.change_role(_merchant_id(), user_id, form.role.data, actor=current_user)
    except teams.NotFound:
        abort(404)
    except teams.LastAdmin:
        flash(_("A merchant needs at least one administrator."), "error")
        return render_team(status=409)
    flash(_("The role was changed."), "success")
    return _back()


@bp.get("/members/<int:user_id>/remove")
def confirm_remove(user_id: int):
    """Confirmation page before removing a member."""
    if not current_user.is_merchant_admin:
        abort(403)
    member = _member(user_id)
    return render_template(
        "merchant/team_remove.html", member=member, form=ConfirmForm(), urls=URLS
    )


@bp.post("/members/<int:user_id>/remove")
def remove(user_id: int):
    """Remove a member from the merchant (never the last administrator)."""
    _confirmed()
    try:
        teams.remove(_merchant_id(), user_id, actor=current_user)
    except teams.NotFound:
        abort(404)
    except teams.LastAdmin:
        flash(_("A merchant needs at least one administrator."), "error")
        return render_team(status=409)
    flash(_("The member was removed."), "success")
    if user_id == current_user.id:
        return redirect(url_for("auth.login"), code=303)
    return _back()


def _member(user_id: int):
    member = next((m for m in teams.members(_merchant_id()) if m.id == user_id), None)
    if member is None:
        abort(404)
    return member


def _confirmed() -> None:
    if not ConfirmForm().validate_on_submit():
        abort(400)
