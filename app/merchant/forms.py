"""Merchant wizard forms: account type, permission sets, consent, confirmations."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import DataRequired, Email, InputRequired, Length

ACCOUNT_TYPE_CHOICES = [
    SelectChoice("official_account", _l("Official Account")),
    SelectChoice("mini_program", _l("Mini Program")),
]
# Bumped whenever the consent text changes, so each record says which text was agreed to.
CONSENT_VERSION = "2025-01"


class GetForm(FlaskForm):
    """Wizard steps that only carry choices forward: plain GET, no CSRF (nothing changes)."""

    class Meta:
        csrf = False


class AccountTypeForm(GetForm):
    # The platform (component AppID), asked only when the merchant may use several; checked
    # against the merchant's platforms by the view (platforms.merchant_platform).
    platform = StringField(_l("Which of your provider's platforms do you want to authorize?"))
    type = RadioField(
        _l("Which kind of account do you want to connect?"),
        choices=ACCOUNT_TYPE_CHOICES,
        validators=[InputRequired(message=_l("Choose the kind of account."))],
    )


class SetsMixin:
    sets = SelectMultipleField(
        _l("Permissions"),
        coerce=int,
        validate_choice=True,
        invalid_choice_message=_l("Choose only from the permissions listed."),
        validators=[DataRequired(message=_l("Choose at least one permission."))],
    )


class PermissionsForm(SetsMixin, AccountTypeForm):
    """Step 2 (GET): the type from step 1 and the chosen sets."""


class ConsentForm(SetsMixin, FlaskForm):
    """Step 3 (POST): the choices again (hidden) and the explicit consent."""

    type = HiddenField()
    platform = HiddenField()
    # One key per rendered form: a resubmission finds the session it already opened.
    consent_key = HiddenField()
    agree = BooleanField(
        _l(
            "I agree that my service provider may access and store this information "
            "as described above."
        ),
        validators=[DataRequired(message=_l("Please tick the box to agree before you continue."))],
    )


class UpdateForm(SetsMixin, FlaskForm):
    """Update permissions (POST): the new list and consent to it."""

    agree = BooleanField(
        _l("I agree that my service provider may use the permissions I keep or add, as described."),
        validators=[DataRequired(message=_l("Please tick the box to agree before you continue."))],
    )


class ConfirmForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


def with_choices(form, permission_sets):
    """Allow exactly the offered sets (anything else is a validation error)."""
    form.sets.choices = [SelectChoice(item.id, item.name()) for item in permission_sets]
    return form


# --- the merchant's team (also used by staff for any merchant) ---------------------------------

TEAM_ROLE_CHOICES = [
    SelectChoice("merchant_admin", _l("Administrator")),
    SelectChoice("merchant_viewer", _l("Viewer (read only)")),
]


class TeamInviteForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Email(), Length(max=254)])
    role = SelectField(_l("Role"), choices=TEAM_ROLE_CHOICES, default="merchant_viewer")


class MemberRoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=TEAM_ROLE_CHOICES)
