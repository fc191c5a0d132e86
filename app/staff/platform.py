"""Staff console: platform health, API keys and webhooks, and the audit log."""

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from app.auth.access import require_staff_role
from app.extensions import db
from app.htmx import render
from app.models import ApiKey, WebhookDelivery
from app.services import clock
from app.services.console import queries, stats
from app.services.custody import apikeys
from app.services.notify import alerts, catalog, channels
from app.services.platform import credentials, health, platforms, status
from app.staff.forms import ApiKeyForm, AuditFilterForm, ConfirmForm

bp = Blueprint("platform", __name__)

DELIVERIES_PER_PAGE = 50


@bp.get("/health")
@require_staff_role("viewer")
def health_page():
    """Ticket, component token, alerts (with their platform when there are several), jobs,
    intake counts (and the sandbox's release check)."""
    days, counters = stats.intake_counts()
    names = platforms.names()  # empty for one platform: the page stays as it was
    return render(
        "staff/health.html",
        fragment="health_status",
        report=_report(),
        platform_names=names,
        custody=status.custody_by_platform(platforms.all_platforms()) if names else [],
        alerts=stats.all_alerts(),
        history=stats.alert_history(),
        received=stats.events_received(),
        last_push=stats.last_push(),
        days=days,
        counters=counters,
        release=stats.sandbox_release_check(),
        now=clock.now(),
        notifications=alerts.recent(),
        describe_alert=catalog.describe,
        channels=channels.configured(),
        test_form=ConfirmForm(),
    )


@bp.post("/health/test-notification")
@require_staff_role("operator")
def send_test_notification():
    """Send a test notification to every configured alert channel now (retried if refused)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if not channels.configured():
        flash(_("No alert channel is configured."), "error")
    else:
        ids = alerts.queue_test()
        sent = alerts.deliver_due(only=ids)
        flash(
            ngettext(
                "Test notification sent to %(sent)s of %(num)d channel.",
                "Test notification sent to %(sent)s of %(num)d channels.",
                len(ids),
                sent=sent,
            ),
            "success" if sent == len(ids) else "error",
        )
    return redirect(url_for("staff.platform.health_page") + "#notifications", code=303)


def _report() -> status.HealthReport:
    """status.report() without its GROUP BY over every stored event (slow at volume)."""
    return status.HealthReport(
        ticket=credentials.ticket_status(),
        component_token=credentials.token_status(),
        alerts=health.active_alerts(),
        rejections_today=health.counters(prefix="rejected:"),
        inbox=stats.inbox_totals(),
        jobs=stats.job_runs(),
    )


@bp.get("/api-keys")
@require_staff_role("admin")
def api_keys():
    """API keys (prefix, scopes, last use) and the form to create one."""
    return _render_keys(ApiKeyForm(formdata=None))


@bp.post("/api-keys")
@require_staff_role("admin")
def create_api_key():
    """Create a key; its secret is shown once on the answer page."""
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _render_keys(form), 422
    try:
        key, secret = apikeys.create_api_key(
            form.name.data, form.scopes.data, actor=current_user, rate_limit=form.rate_limit.data
        )
    except apikeys.InvalidRateLimit:
        form.rate_limit.errors.append(_("Use a limit like “600 per minute”."))
        return _render_keys(form), 422
    except apikeys.InvalidScopes:
        form.scopes.errors.append(_("Choose at least one scope."))
        return _render_keys(form), 422
    # Rendered directly (not redirected): the secret must never travel in a URL or the session.
    response = current_app.make_response(
        _render_keys(ApiKeyForm(formdata=None), new_key=key, secret=secret)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api-keys/<int:key_id>/revoke")
@require_staff_role("admin")
def confirm_revoke(key_id: int):
    """Confirmation page before revoking a key."""
    key = db.get_or_404(ApiKey, key_id)
    return render_template("staff/confirm_revoke.html", key=key, form=ConfirmForm())


@bp.post("/api-keys/<int:key_id>/revoke")
@require_staff_role("admin")
def revoke_api_key(key_id: int):
    """Revoke a key at once (audited)."""
    key = db.get_or_404(ApiKey, key_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    apikeys.revoke_api_key(key, actor=current_user)
    flash(_("API key %(prefix)s revoked.", prefix=key.prefix), "success")
    return redirect(url_for("staff.platform.api_keys"), code=303)


def _render_keys(form, new_key=None, secret=None):
    status = request.args.get("status", "")
    before = request.args.get("before", type=int)
    query = select(WebhookDelivery)
    if status in ("pending", "delivered", "failed"):
        query = query.where(WebhookDelivery.status == status)
    if before:
        query = query.where(WebhookDelivery.id < before)
    deliveries = list(
        db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(DELIVERIES_PER_PAGE))
    )
    return render(
        "staff/api_keys.html",
        fragment="deliveries",
        keys=apikeys.list_api_keys(),
        form=form,
        new_key=new_key,
        secret=secret,
        deliveries=deliveries,
        status=status,
        more=len(deliveries) == DELIVERIES_PER_PAGE,
        webhook_url=current_app.config.get("GRANTDESK_WEBHOOK_URL"),
        webhook_signed=bool(current_app.config.get("GRANTDESK_WEBHOOK_SECRET")),
        delivery_counts=stats.webhook_counts(),
    )


@bp.get("/audit")
@require_staff_role("viewer")
def audit_log():
    """The audit log, filtered by actor, merchant, action and date; newest first."""
    form = AuditFilterForm(formdata=request.args)
    f = form.to_filter(request.args.get("before", type=int))
    entries, next_before = queries.list_audit(f)
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    return render(
        "staff/audit.html",
        fragment="audit_results",
        form=form,
        entries=entries,
        next_before=next_before,
        args=args,
        actions=queries.known_actions(),
        merchants=queries.merchant_choices({e.merchant_id for e in entries}),
    )
