"""The provider staff console: overview, merchants and users; the other areas are nested
blueprints (authorizations, platform) that share this one's staff-only guard."""

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app import labels
from app.auth.access import can, require_staff, require_staff_role
from app.extensions import db
from app.htmx import is_partial_request, render
from app.i18n import locale_code
from app.models import Authorizer, Merchant, User
from app.services import accounts, clock
from app.services.access import teams
from app.services.authorization import attention
from app.services.console import charts, stats
from app.services.console import queries as queries
from app.services.platform import platforms
from app.staff import accounts as accounts_views
from app.staff import integrations as integrations_views
from app.staff import notes as notes_views
from app.staff import platform as platform_views
from app.staff import platforms as platforms_views
from app.staff import provider as provider_views
from app.staff import teams as teams_views
from app.staff import users as users_views
from app.staff.forms import ConfirmForm, InviteForm, MerchantForm, MerchantPlatformsForm
from app.wechat import permissions

bp = Blueprint("staff", __name__)
bp.before_request(require_staff)
bp.register_blueprint(accounts_views.bp, url_prefix="/accounts")
bp.register_blueprint(integrations_views.bp, url_prefix="/integrations")
bp.register_blueprint(platform_views.bp)
bp.register_blueprint(teams_views.bp, url_prefix="/merchants/<int:merchant_id>/team")
bp.register_blueprint(users_views.bp, url_prefix="/users")
bp.add_app_template_global(can, "can")
bp.register_blueprint(provider_views.bp)
bp.register_blueprint(notes_views.bp)
bp.register_blueprint(platforms_views.bp, url_prefix="/platforms")

MERCHANTS_PER_PAGE = 50
SECRET_HINTS = ("ticket", "code", "token", "secret", "password", "key")


@bp.app_template_global()
def set_name(set_id: int) -> str:
    """A permission set's name in the current language."""
    return permissions.name(set_id, locale_code())


@bp.app_template_global()
def merchant_name(merchant_id: int | None) -> str:
    """A merchant's name by id (for one-off labels)."""
    merchant = db.session.get(Merchant, merchant_id) if merchant_id else None
    return merchant.name if merchant else "—"


@bp.app_template_global()
def resolution_text(stored: str | None) -> str:
    """How an attention item was closed, in the reader's language ("Dismissed: duplicate")."""
    found = attention.read_resolution(stored)
    if found.how is None:
        return found.note or "—"
    name = labels.label("attention_resolution", found.how)
    detail = merchant_name(found.merchant_id) if found.merchant_id else found.note
    return name + _(": ") + detail if detail else name


@bp.app_template_global()
def redact(fields: dict | None) -> dict:
    """Event fields as staff may see them: anything secret-looking masked (again)."""
    return {
        k: ("***" if any(h in k.lower() for h in SECRET_HINTS) and v != "***" and v else v)
        for k, v in (fields or {}).items()
    }


@bp.app_template_global()
def age(moment) -> str:
    """How long ago, as "3 h 12 min" (for ticket age and last push)."""
    if moment is None:
        return "—"
    seconds = max(0, int((clock.now() - moment).total_seconds()))
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    if hours:
        return _("%(h)d h %(m)d min ago", h=hours, m=minutes)
    return _("%(m)d min %(s)d s ago", m=minutes, s=seconds % 60)


@bp.get("/")
@require_staff_role("viewer")
def overview():
    """Counts, what needs attention, and charts."""
    if is_partial_request():  # the attention panel refreshing itself
        return render("staff/overview.html", fragment="attention", attention=stats.attention())
    return render(
        "staff/overview.html",
        counts=stats.counts(),
        attention=stats.attention(),
        charts=_overview_charts(),
    )


@bp.get("/sessions")
@require_staff_role("viewer")
def sessions():
    """Open authorization sessions (read-only): the list behind the "pending sessions" card."""
    platform = stats.platform_filter(request.args.get("platform"))
    return render_template(
        "staff/sessions.html", sessions=stats.pending_sessions(component_appid=platform),
        total=stats.pending_count(platform), platform=platform,
        platform_names=platforms.names(),
    )  # fmt: skip


def _overview_charts() -> dict:
    months = stats.grants_over_time()
    days, series = stats.events_per_day()
    offered = platforms.offered_by_any()  # the sets some active platform offers
    coverage = sorted(stats.set_coverage(offered, locale_code()), key=lambda r: (-r[2], r[0]))
    return {
        "grants": charts.bars_with_line(
            [m for m, _n, _t in months], [n for _m, n, _t in months], [t for _m, _n, t in months],
            title=_("Grants over time"), bar_label=_("new"), line_label=_("total"),
        ),
        "events": charts.stacked_bars(
            days, {labels.label("info_type", k): v for k, v in series.items()},
            title=_("Events per day by type"),
        ),
        "coverage": charts.horizontal_bars(
            [(f"{i} · {name}", n, of) for i, name, n, of in coverage],
            title=_("Permission-set coverage"), of_label=_("of"),
        ),
    }  # fmt: skip


@bp.get("/merchants")
@require_staff_role("viewer")
def merchants():
    """Merchants (searchable, paged) with their account and administrator counts."""
    return _render_merchants(MerchantForm())


def _render_merchants(form, status: int = 200):
    q = request.args.get("q", "").strip()[:64]
    page = max(1, request.args.get("page", 1, type=int))
    query = select(Merchant)
    if q:
        query = query.where(Merchant.id == int(q) if q.isdigit() else Merchant.name.ilike(f"%{q}%"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Merchant.id.desc())
        .limit(MERCHANTS_PER_PAGE)
        .offset((page - 1) * MERCHANTS_PER_PAGE)
    ).all()
    ids = [m.id for m in rows]
    counts = dict(
        db.session.execute(
            select(Authorizer.merchant_id, func.count())
            .where(Authorizer.merchant_id.in_(ids))
            .group_by(Authorizer.merchant_id)
        ).all()
    ) if ids else {}  # fmt: skip
    pager = queries.Page(rows=rows, total=total, page=page, per_page=MERCHANTS_PER_PAGE)
    html = render(
        "staff/merchants.html", fragment="merchant_list", merchants=rows, form=form, q=q,
        pages=pager, account_counts=counts,
    )  # fmt: skip
    return html, status


@bp.post("/merchants")
@require_staff_role("admin")
def create_merchant():
    """Create a merchant."""
    form = MerchantForm()
    if not form.validate_on_submit():
        return _render_merchants(form, 422)
    merchant = accounts.create_merchant(form.name.data, form.contact_email.data, actor=current_user)
    flash(_("Merchant %(name)s created.", name=merchant.name), "success")
    return redirect(url_for("staff.merchant", merchant_id=merchant.id), code=303)


@bp.get("/merchants/<int:merchant_id>")
@require_staff_role("viewer")
def merchant(merchant_id: int):
    """A merchant's administrators and invitations."""
    return _render_merchant(db.get_or_404(Merchant, merchant_id))


@bp.post("/merchants/<int:merchant_id>/invitations")
@require_staff_role("admin")
def invite(merchant_id: int):
    """Invite an administrator or viewer; emailed when mail is configured, the link shown."""
    merchant = db.get_or_404(Merchant, merchant_id)
    form = InviteForm()
    if form.validate_on_submit():
        try:
            sent = teams.invite(merchant, form.email.data, form.role.data, actor=current_user)
        except accounts.EmailTaken:
            form.email.errors.append(_("An account with this email already exists."))
        else:
            return _render_merchant(merchant, sent=sent)
    return _render_merchant(merchant, invite_form=form), 422


@bp.post("/merchants/<int:merchant_id>/platforms")
@require_staff_role("admin")
def merchant_platforms(merchant_id: int):
    """Choose the platforms a merchant may authorize (audited)."""
    merchant = db.get_or_404(Merchant, merchant_id)
    form = MerchantPlatformsForm(active=platforms.active_platforms())
    if form.validate_on_submit():
        try:
            changed = platforms.set_merchant_platforms(merchant, form.chosen(), actor=current_user)
        except platforms.PlatformError:
            db.session.rollback()
            form.platforms.errors = [_("Choose only from the active platforms listed.")]
        else:
            db.session.commit()
            if changed:
                flash(_("The merchant's platforms were saved."), "success")
            return redirect(url_for("staff.merchant", merchant_id=merchant.id) + "#platforms", 303)
    return _render_merchant(merchant, platforms_form=form), 422


@bp.get("/users/<int:user_id>/disable")
@require_staff_role("admin")
def confirm_disable_user(user_id: int):
    """Confirmation page before disabling (or re-enabling) a user."""
    user = db.get_or_404(User, user_id)
    if user.id == current_user.id:
        abort(400)
    return render_template("staff/confirm_user.html", user=user, form=ConfirmForm())


@bp.post("/users/<int:user_id>/disable")
@require_staff_role("admin")
def disable_user(user_id: int):
    """Disable or re-enable a user (disabling signs them out everywhere)."""
    user = db.get_or_404(User, user_id)
    if user.id == current_user.id:
        abort(400)
    if ConfirmForm().validate_on_submit():
        accounts.set_user_disabled(user, user.disabled_at is None, actor=current_user)
    if user.merchant_id is None:
        return redirect(url_for("staff.overview"), code=303)
    return redirect(url_for("staff.merchant", merchant_id=user.merchant_id), code=303)


def _platforms_form(merchant) -> MerchantPlatformsForm | None:
    """The merchant's platforms as a form: only when there is a choice to make (several active
    platforms) or an earlier choice to undo."""
    active = platforms.active_platforms()
    if len(active) < 2 and merchant.platform_appids is None:
        return None
    chosen = merchant.platform_appids
    return MerchantPlatformsForm(
        formdata=None, active=active, scope="all" if chosen is None else "chosen",
        platforms=list(chosen or []),
    )  # fmt: skip


def _render_merchant(merchant, invite_form=None, sent=None, platforms_form=None):
    f = queries.AccountFilter(merchant_id=merchant.id, per_page=25)
    invitations = teams.pending_invitations(merchant.id)
    return render_template(
        "staff/merchant.html",
        merchant=merchant,
        members=teams.members(merchant.id),
        invitations=invitations,
        links={i.id: teams.copy_link(merchant.id, i.id) for i in invitations},
        urls=teams_views.urls_for(merchant.id),
        sent=sent,
        now=clock.now(),
        accounts=queries.list_accounts(f),
        invite_form=invite_form or InviteForm(formdata=None),
        platforms_form=platforms_form or _platforms_form(merchant),
        platform_names=platforms.names(),
        confirm_form=ConfirmForm(),
    )
