"""Staff console: the provider's third-party platforms (#16). Staff read each one's state and
custody health; administrators add platforms, record their release and test accounts, replace
their keys (write-only: never shown again) and retire them. The default platform's keys and
status are the WECHAT_* variables', so the console never changes them."""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.auth.access import require_staff_role
from app.extensions import db
from app.i18n import locale_code
from app.models.platform import PLATFORM_ACTIVE, PLATFORM_RETIRED, RELEASE_RELEASED, Platform
from app.services.platform import platforms, status
from app.staff.forms import (
    ConfirmForm,
    PlatformAddForm,
    PlatformForm,
    PlatformKeysForm,
    PlatformSetsForm,
    require_confirmation,
)

bp = Blueprint("platforms", __name__)


@bp.get("")
@require_staff_role("viewer")
def index():
    """Every platform, the default first: state, release, test accounts and custody health."""
    rows = platforms.all_platforms()
    return render_template("staff/platforms.html", custody=status.custody_by_platform(rows))


@bp.get("/new")
@require_staff_role("admin")
def new():
    """The form for a new platform."""
    return _render_new(PlatformAddForm(formdata=None, locale=locale_code()))


@bp.post("")
@require_staff_role("admin")
def create():
    """Add a platform; its keys are stored encrypted and never shown again."""
    form = PlatformAddForm(locale=locale_code())
    if not form.validate_on_submit():
        return _render_new(form, 422)
    try:
        row = platforms.add_platform(actor=current_user, **form.values())
    except platforms.PlatformError as error:
        db.session.rollback()
        if isinstance(error, platforms.DuplicatePlatform):
            form.component_appid.errors.append(_("A platform with this AppID exists already."))
        else:
            form.form_errors.append(str(error))
        return _render_new(form, 422)
    db.session.commit()
    platforms.forget_cache()  # after the commit: a reload before it would miss the new row
    flash(_("Platform %(name)s added. Its keys are not shown again.", name=row.name), "success")
    return redirect(url_for(".index") + f"#platform-{row.component_appid}", code=303)


@bp.get("/<component_appid>/edit")
@require_staff_role("admin")
def edit(component_appid: str):
    """A platform's details, an empty keys form (keys are write-only) and its status."""
    return _render_edit(_platform(component_appid))


@bp.post("/<component_appid>/edit")
@require_staff_role("admin")
def update(component_appid: str):
    """Save name, purpose, release state and test accounts (all of them or nothing)."""
    row = _platform(component_appid)
    form = PlatformForm()
    if not form.validate_on_submit():
        return _render_edit(row, form=form, status=422)
    try:
        platforms.update_details(
            row, name=form.name.data, purpose=form.purpose.data,
            released=form.release_state.data == RELEASE_RELEASED,
            test_accounts=form.test_account_lines(), actor=current_user,
        )  # fmt: skip
    except platforms.PlatformError as error:
        db.session.rollback()
        form.form_errors.append(str(error))
        return _render_edit(row, form=form, status=422)
    db.session.commit()
    flash(_("Platform %(name)s saved.", name=row.name), "success")
    return _to_edit(row)


@bp.post("/<component_appid>/sets")
@require_staff_role("admin")
def update_sets(component_appid: str):
    """Save the permission sets the platform offers and requires (checked, then all or none)."""
    row = _platform(component_appid)
    sets_form = PlatformSetsForm(locale=locale_code())
    if not sets_form.validate_on_submit():
        return _render_edit(row, sets_form=sets_form, status=422)
    try:
        platforms.set_permission_sets(row, **sets_form.sets(), actor=current_user)
    except platforms.PlatformError as error:
        db.session.rollback()
        sets_form.form_errors.append(str(error))
        return _render_edit(row, sets_form=sets_form, status=422)
    db.session.commit()
    platforms.forget_cache()  # after the commit, or a reload in between would keep the old sets
    seconds = current_app.config["PLATFORM_CACHE_SECONDS"]
    flash(_("Permission sets of %(name)s saved. Other processes use them within %(seconds)s "
            "seconds.", name=row.name, seconds=seconds), "success")  # fmt: skip
    return _to_edit(row)


@bp.post("/<component_appid>/keys")
@require_staff_role("admin")
def replace_keys(component_appid: str):
    """Replace some of a platform's keys; blank fields keep theirs. Not the default's."""
    row = _platform(component_appid)
    if row.is_default:
        flash(_("The default platform's keys are the WECHAT_* variables: change them there."),
              "error")  # fmt: skip
        return _to_edit(row)
    keys_form = PlatformKeysForm()
    if not keys_form.validate_on_submit():
        return _render_edit(row, keys_form=keys_form, status=422)
    try:
        platforms.replace_keys(row, actor=current_user, **keys_form.new_keys())
    except platforms.PlatformError as error:
        db.session.rollback()
        keys_form.form_errors.append(str(error))
        return _render_edit(row, keys_form=keys_form, status=422)
    db.session.commit()
    platforms.forget_cache()  # after the commit, or a reload in between would keep the old keys
    seconds = current_app.config["PLATFORM_CACHE_SECONDS"]
    flash(_("Keys replaced; they are not shown again. Other processes use them within "
            "%(seconds)s seconds.", seconds=seconds), "success")  # fmt: skip
    return _to_edit(row)


@bp.get("/<component_appid>/retire")
@require_staff_role("admin")
def confirm_retire(component_appid: str):
    """Confirmation page before retiring a platform."""
    row = _platform(component_appid)
    if row.is_default:
        return _refuse_default(row)
    return render_template("staff/confirm_platform.html", platform=row, form=ConfirmForm())


@bp.post("/<component_appid>/retire")
@require_staff_role("admin")
def retire(component_appid: str):
    """Retire a platform: pushes for it are refused and its jobs stop (audited)."""
    return _set_status(component_appid, PLATFORM_RETIRED)


@bp.post("/<component_appid>/reactivate")
@require_staff_role("admin")
def reactivate(component_appid: str):
    """Put a retired platform back in service (audited)."""
    return _set_status(component_appid, PLATFORM_ACTIVE)


def _set_status(component_appid: str, new_status: str):
    row = _platform(component_appid)
    require_confirmation()
    try:
        platforms.change_status(row, new_status, actor=current_user)
    except platforms.PlatformError:
        db.session.rollback()
        return _refuse_default(row)
    db.session.commit()
    platforms.forget_cache()
    if new_status == PLATFORM_RETIRED:
        flash(_("Platform %(name)s retired.", name=row.name), "success")
    else:
        flash(_("Platform %(name)s is in service again.", name=row.name), "success")
    return _to_edit(row)


def _refuse_default(row: Platform):
    flash(_("The default platform cannot be retired: it is the one the WECHAT_* variables "
            "describe."), "error")  # fmt: skip
    return _to_edit(row)


def _platform(component_appid: str) -> Platform:
    """The platform, or 404; the default platform's row is written from WECHAT_* if missing."""
    if platforms.is_default(component_appid):
        return platforms.default_row()
    return platforms.get(component_appid) or abort(404)


def _to_edit(row: Platform):
    return redirect(url_for(".edit", component_appid=row.component_appid), code=303)


def _render_new(form: PlatformAddForm, status: int = 200):
    return render_template(
        "staff/platform_new.html", form=form, configured_sets=_configured_sets()
    ), status


def _render_edit(row: Platform, form=None, keys_form=None, sets_form=None, status: int = 200):
    """The edit page; the form not being submitted shows the stored values (never a key)."""
    data = {
        "name": row.name,
        "purpose": row.purpose or "",
        "release_state": row.release_state,
        "test_accounts": "\n".join(row.test_accounts or ()),
    }
    sets = {"offered_set_ids": [str(i) for i in row.offered_set_ids or ()],
            "required_set_ids": [str(i) for i in row.required_set_ids or ()]}  # fmt: skip
    return render_template(
        "staff/platform.html",
        platform=row,
        form=form or PlatformForm(formdata=None, data=data),
        keys_form=keys_form or PlatformKeysForm(formdata=None),
        sets_form=sets_form or PlatformSetsForm(formdata=None, data=sets, locale=locale_code()),
        configured_sets=_configured_sets(),
        confirm_form=ConfirmForm(),
    ), status


def _configured_sets() -> dict:
    """The configured default offer and requirements (what empty lists stand for)."""
    return {
        "offered": platforms.configured_offered_set_ids(),
        "official_account": platforms.configured_required_set_ids("official_account"),
        "mini_program": platforms.configured_required_set_ids("mini_program"),
    }
