"""Staff console: every authorized account (table, filters, CSV), one account, and its actions."""

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from app.auth.access import require_staff_role
from app.extensions import db
from app.htmx import render
from app.i18n import locale_code, sentence_gap
from app.models import AttentionItem, Authorizer, InboxEvent, Merchant
from app.services import DomainError, clock
from app.services.console import actions, bulk
from app.services.console import queries as queries
from app.services.custody import serve
from app.services.platform import platforms
from app.services.relay import stats as relay_stats
from app.staff.forms import (
    AccountFilterForm,
    AssignForm,
    ConfirmForm,
    DismissForm,
    require_confirmation,
)

bp = Blueprint("accounts", __name__)

# Confirmed actions on an account: name -> (title, button label). Texts are translated in views.
ACTIONS = ("refresh_token", "resync")


def _filter_form() -> AccountFilterForm:
    return AccountFilterForm(formdata=request.args, locale=locale_code())


def _query_args(f: queries.AccountFilter, **changes) -> dict:
    """The query string of a filter (for pager, sort and export links): only what is set."""
    f = f.with_(**changes)
    args = {
        "q": f.q, "status": f.status, "account_type": f.account_type, "merchant": f.merchant_id,
        "set_id": f.set_id, "set_mode": f.set_mode if f.set_id else None,
        "attention": "y" if f.attention else None, "platform": f.component_appid or None,
        "sort": f.sort if f.sort != queries.DEFAULT_SORT else None,
        "per_page": f.per_page if f.per_page != 50 else None,
        "page": f.page if f.page > 1 else None,
    }  # fmt: skip
    return {k: v for k, v in args.items() if v not in (None, "")}


@bp.get("/")
@require_staff_role("viewer")
def index():
    """The authorizations table: filters, search, sort, pages; htmx swaps just the results."""
    form = _filter_form()
    f = form.to_filter(request.args.get("page", 1, type=int))
    page = queries.list_accounts(f)
    merchant_name = queries.merchant_choices([f.merchant_id]).get(f.merchant_id)
    return render(
        "staff/accounts.html",
        fragment="results",
        form=form,
        f=f,
        page=page,
        args=lambda **changes: _query_args(f, **changes),
        merchant_name=merchant_name,
        platform_names=form.platform_names,
        now=clock.now(),
    )


def _selected_filter() -> queries.AccountFilter:
    """The list's filter narrowed to the ticked accounts, unless "all matching" was chosen."""
    f = _filter_form().to_filter(1)
    if request.args.get("scope") == "all":
        return f
    ids = tuple(i for i in request.args.getlist("ids", type=int) if i > 0)
    return f.with_(ids=ids or (0,))  # nothing ticked: nothing selected (there is no id 0)


def _has_selection() -> bool:
    return request.args.get("scope") == "all" or bool(request.args.getlist("ids", type=int))


@bp.get("/export.csv")
@require_staff_role("viewer")
def export():
    """Every account matching the filters as CSV, streamed in chunks (constant memory).
    From the bulk bar: only the ticked accounts, or all matching with scope=all."""
    if request.args.get("bulk"):
        if not _has_selection():
            flash(_bulk_refusal(bulk.EmptySelection()), "error")
            return redirect(
                url_for("staff.accounts.index", **_query_args(_filter_form().to_filter(1))),
                code=303,
            )
        f = _selected_filter()
    else:
        f = _filter_form().to_filter(1)
    stamp = clock.now().strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(queries.export_rows(f)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="authorizations-{stamp}.csv"'},
    )


@bp.get("/bulk/<any(resync, notify):action>")
@require_staff_role("operator")
def bulk_confirm(action: str):
    """Confirmation page for a bulk action on the ticked (or all matching) accounts."""
    f = _selected_filter()
    try:
        if not _has_selection():
            raise bulk.EmptySelection()
        ids = bulk.selection(f)
    except DomainError as error:
        flash(_bulk_refusal(error), "error")
        return redirect(url_for("staff.accounts.index", **_query_args(f)), code=303)
    accounts = queries.list_accounts(f.with_(page=1, per_page=max(queries.PER_PAGE_CHOICES)))
    return render_template(
        "staff/bulk_confirm.html",
        action=action,
        count=len(ids),
        accounts=accounts.rows,
        form=ConfirmForm(),
        action_url=url_for(
            "staff.accounts.bulk_apply", action=action, **request.args.to_dict(flat=False)
        ),
        back_url=url_for("staff.accounts.index", **_query_args(f)),
    )


@bp.post("/bulk/<any(resync, notify):action>")
@require_staff_role("operator")
def bulk_apply(action: str):
    """Run a confirmed bulk action (each account audited, the run too) and say how it went."""
    require_confirmation()
    f = _selected_filter()
    back = url_for("staff.accounts.index", **_query_args(f))
    try:
        if not _has_selection():
            raise bulk.EmptySelection()
        ids = bulk.selection(f)
    except DomainError as error:
        flash(_bulk_refusal(error), "error")
        return redirect(back, code=303)
    outcome = bulk.run(action, ids, actor=current_user)
    ok, failed = len(outcome.succeeded), len(outcome.failed)
    if action == "resync":
        message = _(
            "Re-sync from WeChat: %(ok)d succeeded, %(failed)d failed.", ok=ok, failed=failed
        )
    else:
        message = ngettext(
            "Re-authorization request emailed for %(num)d account.",
            "Re-authorization request emailed for %(num)d accounts.",
            ok,
        )
        if failed:
            message += sentence_gap() + ngettext(
                "%(num)d account could not be emailed (no merchant, or no administrator to email).",
                "%(num)d accounts could not be emailed (no merchant, or no administrator to "
                "email).",
                failed,
            )
    flash(message, "success" if not failed else "warning")
    return redirect(back, code=303)


def _bulk_refusal(error: DomainError) -> str:
    if isinstance(error, bulk.SelectionTooLarge):
        return _(
            "At most %(limit)d accounts at once; narrow the filter or tick fewer accounts.",
            limit=bulk.BULK_LIMIT,
        )
    return _("Tick at least one account, or choose all accounts matching the filter.")


@bp.get("/<int:authorizer_id>")
@require_staff_role("viewer")
def detail(authorizer_id: int):
    """One account: profile, merchant, grant history, sessions, events, tokens, audit."""
    authorizer = db.get_or_404(Authorizer, authorizer_id)
    before = request.args.get("before", type=int)
    events = queries.account_events(authorizer, before_id=before)
    return render(
        "staff/account.html",
        fragment="events",
        authorizer=authorizer,
        events=events,
        changes=queries.account_changes(authorizer),
        sessions=queries.account_sessions(authorizer),
        attention_items=queries.account_attention(authorizer),
        platform_names=platforms.names(),
        audit_entries=queries.account_audit(authorizer),
        token=serve.token_health(authorizer),
        relay=relay_stats.account_stats(authorizer_id=authorizer.id),
        confirm_form=ConfirmForm(),
        now=clock.now(),
    )


@bp.get("/<int:authorizer_id>/<any(refresh_token, resync, purge):action>")
@require_staff_role("operator")
def confirm(authorizer_id: int, action: str):
    """Confirmation page for an account action."""
    authorizer = db.get_or_404(Authorizer, authorizer_id)
    return render_template(
        "staff/confirm_action.html", authorizer=authorizer, action=action, form=ConfirmForm()
    )


@bp.post("/<int:authorizer_id>/refresh_token")
@require_staff_role("operator")
def refresh_token(authorizer_id: int):
    """Refresh the access token now (audited)."""
    authorizer = db.get_or_404(Authorizer, authorizer_id)
    require_confirmation()
    try:
        actions.refresh_token_now(authorizer, actor=current_user)
    except DomainError as error:
        flash(_("Token refresh failed: %(reason)s", reason=error.details.get("outcome")), "error")
    else:
        flash(_("Access token refreshed."), "success")
    return _back_to(authorizer_id)


@bp.post("/<int:authorizer_id>/resync")
@require_staff_role("operator")
def resync(authorizer_id: int):
    """Re-read profile and grant from WeChat (audited)."""
    authorizer = db.get_or_404(Authorizer, authorizer_id)
    require_confirmation()
    try:
        actions.resync_authorizer(authorizer, actor=current_user)
    except DomainError:
        flash(_("WeChat did not return this account; nothing changed."), "error")
    else:
        flash(_("Account information re-synced from WeChat."), "success")
    return _back_to(authorizer_id)


@bp.post("/<int:authorizer_id>/purge")
@require_staff_role("operator")
def purge(authorizer_id: int):
    """Purge the account once WeChat confirms it is revoked (audited)."""
    authorizer = db.get_or_404(Authorizer, authorizer_id)
    require_confirmation()
    try:
        actions.purge_account(authorizer, actor=current_user)
    except DomainError as error:
        flash(PURGE_REFUSALS.get(error.code, PURGE_REFUSALS["still_authorized"])(), "error")
        return _back_to(authorizer_id)
    flash(_("WeChat confirmed the revocation; the account's data was purged."), "success")
    return redirect(url_for("staff.accounts.index"), code=303)


PURGE_REFUSALS = {
    "still_authorized": lambda: _(
        "WeChat still lists this account as authorized; nothing was deleted. "
        "The merchant must revoke it on WeChat first."
    ),
    "cannot_verify_revocation": lambda: _(
        "WeChat could not confirm the revocation right now; nothing was deleted. Try again later."
    ),
}


@bp.get("/events/<int:event_id>/replay")
@require_staff_role("operator")
def confirm_replay(event_id: int):
    """Confirmation page for replaying an event."""
    event = db.get_or_404(InboxEvent, event_id)
    return render_template("staff/confirm_replay.html", event=event, form=ConfirmForm())


@bp.post("/events/<int:event_id>/replay")
@require_staff_role("operator")
def replay(event_id: int):
    """Run a failed event's handler again (audited)."""
    event = db.get_or_404(InboxEvent, event_id)
    require_confirmation()
    named = (event.component_appid, event.authorizer_appid)
    try:
        outcome = actions.replay_event(event, actor=current_user)
    except DomainError:
        flash(_("Only failed or pending events can be replayed."), "error")
    else:
        flash(_("Event replayed: %(outcome)s", outcome=outcome), "success")
    return _back_to_account(*named)


@bp.get("/attention/<int:item_id>")
@require_staff_role("operator")
def resolve_form(item_id: int):
    """Confirmation page for resolving an attention item: assign to a merchant or dismiss."""
    return _render_resolve(_open_item(item_id))


def _chosen_merchant(form: AssignForm) -> Merchant | None:
    """The merchant a valid resolve form names; None with the form's error set otherwise."""
    if not form.validate_on_submit():
        return None
    merchant = db.session.get(Merchant, form.merchant_id.data)
    if merchant is None:
        form.merchant_id.errors.append(_("No merchant with this ID."))
    return merchant


@bp.post("/attention/<int:item_id>/assign")
@require_staff_role("operator")
def assign(item_id: int):
    """Give the account to a merchant and close the item (audited)."""
    item = _open_item(item_id)
    form = AssignForm()
    merchant = _chosen_merchant(form)
    if merchant is None:
        return _render_resolve(item, assign_form=form), 422
    try:
        authorizer = actions.assign_authorizer(item, merchant, actor=current_user)
    except actions.NotAssignable:
        flash(_("This item is not resolved by assigning the account to a merchant."), "error")
        return redirect(url_for("staff.accounts.resolve_form", item_id=item.id), code=303)
    except DomainError:
        flash(_("This account no longer exists."), "error")
        return redirect(url_for("staff.overview"), code=303)
    flash(_("Account assigned to %(name)s.", name=merchant.name), "success")
    return _back_to(authorizer.id)


@bp.post("/attention/<int:item_id>/adopt")
@require_staff_role("operator")
def adopt(item_id: int):
    """Adopt an unknown authorizer into a merchant and close the item (audited)."""
    item = _open_item(item_id)
    form = AssignForm()
    merchant = _chosen_merchant(form)
    if merchant is None:
        return _render_resolve(item, adopt_form=form), 422
    try:
        authorizer = actions.adopt_authorizer(item, merchant, actor=current_user)
    except DomainError as error:
        db.session.rollback()
        refusal = ADOPT_REFUSALS.get(error.details.get("reason"), ADOPT_REFUSALS["default"])
        form.merchant_id.errors.append(refusal())
        return _render_resolve(item, adopt_form=form), 422
    flash(_("Account adopted into %(name)s.", name=merchant.name), "success")
    return _back_to(authorizer.id)


ADOPT_REFUSALS = {
    "not_authorized": lambda: _("WeChat no longer lists this account as authorized."),
    "wechat_unreachable": lambda: _("WeChat could not be reached; nothing changed. Try again."),
    "no_refresh_token": lambda: _("WeChat returned no refresh token for this account."),
    "already_held": lambda: _("Grantdesk already holds this account."),
    "default": lambda: _("This account cannot be adopted."),
}


@bp.post("/attention/<int:item_id>/dismiss")
@require_staff_role("operator")
def dismiss(item_id: int):
    """Close an attention item without other changes (audited)."""
    item = _open_item(item_id)
    form = DismissForm()
    if not form.validate_on_submit():
        return _render_resolve(item, dismiss_form=form), 422
    named = (item.component_appid, item.authorizer_appid)
    actions.dismiss_attention(item, actor=current_user, note=form.note.data or "")
    flash(_("Attention item dismissed."), "success")
    return _back_to_account(*named)


def _open_item(item_id: int) -> AttentionItem:
    item = db.get_or_404(AttentionItem, item_id)
    if item.resolved_at is not None:
        abort(404)
    return item


def _render_resolve(item, assign_form=None, dismiss_form=None, adopt_form=None):
    q = request.args.get("q", "")
    authorizer = actions.authorizer_for_item(item)
    return render_template(
        "staff/resolve.html",
        item=item,
        authorizer=authorizer,
        offered=actions.resolutions(item, authorizer),
        assign_form=assign_form or AssignForm(formdata=None, merchant_id=item.merchant_id),
        adopt_form=adopt_form or AssignForm(formdata=None, merchant_id=item.merchant_id),
        dismiss_form=dismiss_form or DismissForm(formdata=None),
        matches=queries.search_merchants(q),
        q=q,
    )


def _back_to(authorizer_id: int):
    return redirect(url_for("staff.accounts.detail", authorizer_id=authorizer_id), code=303)


def _back_to_account(component_appid: str | None, appid: str | None):
    """To the page of the account an event or item named (the same appid may be held on
    several platforms: the named platform's), else the overview."""
    authorizer = queries.account_for(component_appid, appid)
    if authorizer is None:
        return redirect(url_for("staff.overview"), code=303)
    return _back_to(authorizer.id)
