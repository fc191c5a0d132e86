"""Staff console: integrations, where the token API's consumers (API keys) and the message relay's
routes live together. Staff read everything; administrators change routes; operators test-send and
replay dead letters. Pages show counts, statuses and timings, never message content or secrets.
With several third-party platforms, routes name the platform whose accounts they serve (or all),
and the route list can be narrowed to one platform (`?platform=`)."""

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

from app.auth.access import can, require_staff_role
from app.extensions import db
from app.htmx import render
from app.models import Merchant, RelayDelivery, RelayRoute
from app.services.custody import apikeys
from app.services.platform import platforms
from app.services.relay import outbox, routes, stats
from app.staff.forms import ConfirmForm, RelayRouteForm, require_confirmation

bp = Blueprint("integrations", __name__)

DEAD_PER_PAGE = 50
LAST_ERRORS = 10


@bp.app_template_global()
def route_target(route) -> str:
    """A route's URL as pages show it: host and path, never the query (it may hold a key)."""
    return routes.display_url(route.url)


@bp.get("")
@require_staff_role("viewer")
def index():
    """API keys and relay routes on one page, each route with its counts and reply times; with
    `?platform=`, the routes serving that platform and their deliveries for its accounts."""
    names = platforms.names()  # empty for one platform: the page stays as it was
    platform = request.args.get("platform") or None
    if platform not in names:
        platform = None
    listed = routes.list_routes(platform)
    return render_template(
        "staff/integrations.html",
        routes=listed,
        route_stats=stats.route_stats([r.id for r in listed], component_appid=platform),
        platform_names=names,
        platform=platform,
        keys=apikeys.list_api_keys() if can("admin") else [],
        window_hours=current_app.config["RELAY_RETENTION_HOURS"],
    )


@bp.get("/relay/new")
@require_staff_role("admin")
def new_route():
    """The form for a new relay route."""
    return _render_form(_form(formdata=None))


@bp.post("/relay")
@require_staff_role("admin")
def create_route():
    """Create a route; a generated token or secret is shown once on the answer page."""
    form = _form()
    if not form.validate_on_submit():
        return _render_form(form, status=422)
    try:
        route = routes.create_route(**form.values(), **form.credentials(), actor=current_user)
    except routes.RouteError as error:
        return _refused(form, error)
    flash(_("Route %(name)s created.", name=route.name), "success")
    return _saved(route)


@bp.get("/relay/<int:route_id>")
@require_staff_role("viewer")
def detail(route_id: int):
    """One route: settings, counts, reply times, last errors, dead letters and accounts."""
    return _render_route(db.get_or_404(RelayRoute, route_id))


@bp.get("/relay/<int:route_id>/edit")
@require_staff_role("admin")
def edit_route(route_id: int):
    """The route's form, filled in (never its token or secret)."""
    route = db.get_or_404(RelayRoute, route_id)
    data = {
        "name": route.name,
        "url": routes.display_url(route.url),  # the query may hold a key: write-only too
        "format": route.format,
        "mode": route.mode,
        "scope": RelayRouteForm.scope_of(route),
        "merchant_id": route.merchant_id,
        "authorizer_appid": route.authorizer_appid or "",
        "component_appid": route.component_appid or "",
        "msg_types": ", ".join(route.msg_types or ()),
    }
    return _render_form(_form(formdata=None, data=data, editing=True), route=route)


@bp.post("/relay/<int:route_id>/edit")
@require_staff_role("admin")
def update_route(route_id: int):
    """Save a route; a blank token or secret keeps the stored one."""
    route = db.get_or_404(RelayRoute, route_id)
    form = _form(editing=True)
    if not form.validate_on_submit():
        return _render_form(form, route=route, status=422)
    values = form.values()
    if values["url"] == routes.display_url(route.url):
        values["url"] = route.url  # left as shown: keep the hidden query
    try:
        routes.update_route(route, actor=current_user, **values, **form.credentials())
    except routes.RouteError as error:
        return _refused(form, error, route=route)
    flash(_("Route %(name)s saved.", name=route.name), "success")
    return _saved(route)


@bp.post("/relay/<int:route_id>/pause")
@require_staff_role("admin")
def pause_route(route_id: int):
    """Stop sending messages to the route (async deliveries wait until it is resumed)."""
    return _set_paused(route_id, True)


@bp.post("/relay/<int:route_id>/resume")
@require_staff_role("admin")
def resume_route(route_id: int):
    """Send messages to the route again."""
    return _set_paused(route_id, False)


def _set_paused(route_id: int, paused: bool):
    route = db.get_or_404(RelayRoute, route_id)
    require_confirmation()
    routes.set_paused(route, paused, actor=current_user)
    if paused:
        flash(_("Route %(name)s paused.", name=route.name), "success")
    else:
        flash(_("Route %(name)s resumed.", name=route.name), "success")
    return _back(route.id)


@bp.post("/relay/<int:route_id>/test")
@require_staff_role("operator")
def test_route(route_id: int):
    """Send a made-up text message to the route now and show what came back."""
    route = db.get_or_404(RelayRoute, route_id)
    require_confirmation()
    return _render_route(route, fragment="test_result", test_result=routes.test_send(route))


@bp.get("/relay/<int:route_id>/delete")
@require_staff_role("admin")
def confirm_delete(route_id: int):
    """Confirmation page before deleting a route."""
    return _confirmation_page(route_id, "delete")


@bp.post("/relay/<int:route_id>/delete")
@require_staff_role("admin")
def delete_route(route_id: int):
    """Delete a route with its deliveries (audited)."""
    route = db.get_or_404(RelayRoute, route_id)
    require_confirmation()
    name = route.name
    routes.delete_route(route, actor=current_user)
    flash(_("Route %(name)s deleted.", name=name), "success")
    return redirect(url_for(".index"), code=303)


@bp.post("/relay/<int:route_id>/dead/<int:delivery_id>/replay")
@require_staff_role("operator")
def replay(route_id: int, delivery_id: int):
    """Queue one dead delivery again, as a fresh series of attempts (audited)."""
    delivery = db.get_or_404(RelayDelivery, delivery_id)
    if delivery.route_id != route_id:
        abort(404)
    require_confirmation()
    try:
        outbox.replay(delivery, actor=current_user)
    except outbox.NotDead:
        flash(_("Delivery %(id)s is not a dead letter any more.", id=delivery_id), "error")
    else:
        flash(_("Delivery %(id)s is queued again.", id=delivery_id), "success")
    return _back(route_id, "#dead_letters")


@bp.get("/relay/<int:route_id>/dead/replay")
@require_staff_role("operator")
def confirm_replay_dead(route_id: int):
    """Confirmation page before replaying every dead letter of a route."""
    return _confirmation_page(route_id, "replay")


@bp.post("/relay/<int:route_id>/dead/replay")
@require_staff_role("operator")
def replay_dead(route_id: int):
    """Queue every dead delivery of a route again (audited)."""
    route = db.get_or_404(RelayRoute, route_id)
    require_confirmation()
    n = outbox.replay_dead(route_id=route.id, actor=current_user)
    flash(ngettext("%(num)d dead delivery is queued again.",
                   "%(num)d dead deliveries are queued again.", n), "success")  # fmt: skip
    return _back(route.id, "#dead_letters")


def _confirmation_page(route_id: int, action: str):
    """What deleting the route, or replaying its dead letters, will touch; then the button."""
    route = db.get_or_404(RelayRoute, route_id)
    counts = stats.route_stats([route.id])[route.id].counts
    return render_template(
        "staff/confirm_relay.html", action=action, route=route, counts=counts, form=ConfirmForm()
    )


def _saved(route):
    """On to the route's page; a generated token or secret is shown there once, on this answer."""
    if not route.generated_credential:
        return _back(route.id)
    # Rendered directly (not redirected): the credential must never travel in a URL or the session.
    response = current_app.make_response(_render_route(route, generated=route.generated_credential))
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(form, error: routes.RouteError, route=None):
    """The form again (422) with the service's reason next to the input at fault."""
    if error.field == "scope":
        target = form.authorizer_appid if form.scope.data == "appid" else form.merchant_id
    else:
        target = form._fields.get(error.field or "")
    (target.errors if target is not None else form.form_errors).append(str(error))
    return _render_form(form, route=route, status=422)


def _back(route_id: int, anchor: str = ""):
    return redirect(url_for(".detail", route_id=route_id) + anchor, code=303)


def _form(**kwargs) -> RelayRouteForm:
    """The route form (from the request unless `formdata=None`), with the merchants (and, when
    there are several, the platforms) to choose."""
    merchants = db.session.scalars(select(Merchant).order_by(Merchant.name, Merchant.id)).all()
    return RelayRouteForm(merchants=merchants, platforms=platforms.names(), **kwargs)


def _render_form(form, route=None, status=200):
    return render_template("staff/relay_form.html", form=form, route=route), status


def _render_route(route, fragment="dead_letters", generated=None, test_result=None):
    """The route page, or (for htmx) its dead-letter list or test-send result."""
    dead = stats.dead_letters(route.id, before=request.args.get("before", type=int),
                              limit=DEAD_PER_PAGE)  # fmt: skip
    return render(
        "staff/relay_route.html",
        fragment=fragment,
        route=route,
        stats=stats.route_stats([route.id], last_errors=LAST_ERRORS)[route.id],
        accounts=stats.account_stats(route_id=route.id),
        dead=dead,
        more_dead=len(dead) == DEAD_PER_PAGE,
        window_hours=current_app.config["RELAY_RETENTION_HOURS"],
        confirm_form=ConfirmForm(),
        platform_names=platforms.names(),
        generated=generated,
        test_result=test_result,
    )
