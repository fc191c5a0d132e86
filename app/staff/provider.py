"""Staff console: the provider's profile merchants see (display name and logo)."""

from flask import Blueprint, flash, redirect, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired, Length

from app.auth.access import require_staff_role
from app.htmx import render
from app.services.platform import provider

bp = Blueprint("provider", __name__)


class ProviderForm(FlaskForm):
    display_name = StringField(
        _l("Display name"),
        validators=[
            DataRequired(message=_l("Enter the name merchants see.")),
            Length(max=provider.MAX_NAME, message=_l("Use at most 64 characters.")),
        ],
        description=_l(
            "Exactly as WeChat shows your third-party platform, so merchants can find it in "
            "WeChat's list of authorized platforms."
        ),
    )
    logo = FileField(_l("Logo"), description=_l("PNG or JPEG, up to 200 KB. Square works best."))
    remove_logo = BooleanField(_l("Remove the current logo"))


@bp.route("/settings/provider", methods=["GET", "POST"])
@require_staff_role("admin")
def settings():
    """The provider's display name and logo: shown on every merchant page and the phone landing."""
    current = provider.current_provider()
    form = ProviderForm(display_name=current.name)
    if form.validate_on_submit():
        upload = form.logo.data
        data = upload.read() if upload else b""
        try:
            provider.update_provider(
                form.display_name.data, logo_bytes=data or None,
                remove_logo=bool(form.remove_logo.data), actor=current_user,
            )  # fmt: skip
        except provider.InvalidProfile:
            form.logo.errors.append(_("The logo must be a PNG or JPEG image of at most 200 KB."))
        else:
            flash(_("Saved. Merchants now see this name and logo."), "success")
            return redirect(url_for("staff.provider.settings"), code=303)
    status = 422 if form.errors else 200
    return render("staff/provider.html", form=form, current=current), status
