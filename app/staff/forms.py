"""Staff console forms."""

from datetime import UTC, datetime, time, timedelta

from flask import abort
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    PasswordField,
    RadioField,
    SearchField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    URLField,
    ValidationError,
    widgets,
)
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp

from app.labels import VOCABULARIES
from app.models.api import SCOPES
from app.models.platform import RELEASE_STATES
from app.models.relay import FORMATS, MODES
from app.services.console import queries as queries
from app.services.platform import platforms
from app.wechat import permissions


class MerchantForm(FlaskForm):
    name = StringField(_l("Merchant name"), validators=[DataRequired(), Length(max=120)])
    contact_email = EmailField(_l("Contact email"), validators=[Optional(), Email()])


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class MerchantPlatformsForm(FlaskForm):
    """Which platforms a merchant may authorize (#16): every active one, or those ticked."""

    scope = RadioField(
        _l("Platforms this merchant may authorize"),
        choices=[
            SelectChoice("all", _l("Every active platform, also those added later")),
            SelectChoice("chosen", _l("Only the platforms ticked below")),
        ],
        default="all",
    )
    platforms = MultiCheckboxField(_l("Platforms"))

    def __init__(self, *args, active=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.platforms.choices = [SelectChoice(row.component_appid, row.name) for row in active]

    def validate_platforms(self, field):
        if self.scope.data == "chosen" and not field.data:
            raise ValidationError(_("Tick at least one platform."))

    def chosen(self) -> list[str] | None:
        """What to store: None for every active platform, else the ticked AppIDs."""
        return None if self.scope.data == "all" else list(self.platforms.data or [])


class InviteForm(FlaskForm):
    email = EmailField(_l("Administrator's email"), validators=[DataRequired(), Email()])
    role = SelectField(
        _l("Role"),
        choices=[
            SelectChoice("merchant_admin", _l("Administrator")),
            SelectChoice("merchant_viewer", _l("Viewer (read only)")),
        ],
        default="merchant_admin",
    )


class ConfirmForm(FlaskForm):
    """An empty form: a button with a CSRF token, for confirmed actions."""


def require_confirmation() -> None:
    """Answer 400 unless the request carries a valid ConfirmForm (its CSRF token)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)


class GetForm(FlaskForm):
    """A filter form read from the query string: no CSRF (it changes nothing)."""

    class Meta:
        csrf = False


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class AccountFilterForm(GetForm):
    q = SearchField(_l("Name or appid"), validators=[Optional(), Length(max=64)])
    status = SelectField(
        _l("Status"),
        choices=[
            SelectChoice("", _l("Any status")),
            SelectChoice("active", _l("Active")),
            SelectChoice("needs_reauthorization", _l("Needs re-authorization")),
            SelectChoice("unassigned", _l("No merchant")),
        ],
        validate_choice=False,
    )
    account_type = SelectField(
        _l("Account type"),
        choices=[
            SelectChoice("", _l("Any type")),
            SelectChoice("official_account", _l("Official Account")),
            SelectChoice("mini_program", _l("Mini Program")),
        ],
        validate_choice=False,
    )
    merchant = IntegerField(_l("Merchant ID"), validators=[Optional(), NumberRange(min=1)])
    set_id = SelectField(_l("Permission set"), coerce=_int_or_none, validate_choice=False)
    set_mode = SelectField(
        _l("Set is"),
        choices=[SelectChoice("granted", _l("granted")), SelectChoice("missing", _l("missing"))],
        validate_choice=False,
    )
    attention = BooleanField(_l("Needs attention only"))
    # Shown only when the deployment has several platforms (#16).
    platform = SelectField(_l("Platform"), validate_choice=False)
    sort = SelectField(
        _l("Sort by"),
        choices=[
            SelectChoice("-created", _l("Newest first")),
            SelectChoice("created", _l("Oldest first")),
            SelectChoice("name", _l("Name")),
            SelectChoice("appid", "appid"),
            SelectChoice("merchant", _l("Merchant")),
            SelectChoice("status", _l("Status")),
            SelectChoice("-authorized", _l("Recently authorized")),
        ],
        validate_choice=False,
    )
    per_page = SelectField(
        _l("Per page"),
        choices=[SelectChoice(str(n), str(n)) for n in queries.PER_PAGE_CHOICES],
        default=str(queries.AccountFilter.per_page),  # the select shows what the list uses
        validate_choice=False,
    )

    def __init__(self, *args, locale=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Grouped by account type: some names exist for both types (with different ids).
        groups = {"official_account": _l("Official Account"), "mini_program": _l("Mini Program")}
        self.set_id.choices = [SelectChoice("", _l("Any set"))] + [
            SelectChoice(str(s.id), f"{s.id} · {s.name(locale)}", optgroup=str(group))
            for kind, group in groups.items()
            for s in permissions.for_account_type(kind)
        ]
        self.platform_names = platforms.names()
        self.platform.choices = [SelectChoice("", _l("Any platform"))] + [
            SelectChoice(appid, name) for appid, name in self.platform_names.items()
        ]

    def to_filter(self, page: int) -> queries.AccountFilter:
        """The query these inputs ask for (bad values fall back to defaults)."""
        self.validate()
        per_page = _int_or_none(self.per_page.data)
        return queries.AccountFilter(
            status=self.status.data or "",
            account_type=self.account_type.data or "",
            merchant_id=self.merchant.data if not self.merchant.errors else None,
            set_id=self.set_id.data if self.set_id.data in permissions.catalog() else None,
            set_mode="missing" if self.set_mode.data == "missing" else "granted",
            attention=bool(self.attention.data),
            q=(self.q.data or "")[: queries.MAX_SEARCH],
            component_appid=self.platform.data if self.platform.data in self.platform_names else "",
            sort=self.sort.data or queries.DEFAULT_SORT,
            page=max(1, page),
            per_page=per_page if per_page in queries.PER_PAGE_CHOICES else 50,
        )


class AssignForm(FlaskForm):
    merchant_id = IntegerField(_l("Merchant ID"), validators=[DataRequired(), NumberRange(min=1)])


class DismissForm(FlaskForm):
    note = StringField(_l("Note (optional)"), validators=[Optional(), Length(max=200)])


class ApiKeyForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    scopes = MultiCheckboxField(
        _l("Scopes"), choices=[SelectChoice(s, s) for s in SCOPES], validators=[DataRequired()]
    )
    rate_limit = StringField(
        _l("Rate limit"), default="600 per minute", validators=[DataRequired(), Length(max=64)]
    )


class AuditFilterForm(GetForm):
    actor = StringField(_l("Actor"), validators=[Optional(), Length(max=254)])
    merchant = IntegerField(_l("Merchant ID"), validators=[Optional(), NumberRange(min=1)])
    action = StringField(_l("Action"), validators=[Optional(), Length(max=64)])
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])

    def to_filter(self, before_id: int | None) -> queries.AuditFilter:
        self.validate()
        start = self.date_from.data if not self.date_from.errors else None
        end = self.date_to.data if not self.date_to.errors else None
        return queries.AuditFilter(
            actor=self.actor.data or "",
            merchant_id=self.merchant.data if not self.merchant.errors else None,
            action=self.action.data or "",
            date_from=datetime.combine(start, time.min, UTC) if start else None,
            date_to=datetime.combine(end, time.min, UTC) + timedelta(days=1) if end else None,
            before_id=before_id,
        )


STAFF_ROLE_CHOICES = [
    SelectChoice("viewer", _l("Viewer: reads lists and details")),
    SelectChoice("operator", _l("Operator: account actions")),
    SelectChoice("admin", _l("Administrator: users, roles, API keys, settings")),
]


class StaffUserForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Email(), Length(max=254)])
    name = StringField(_l("Name"), validators=[Optional(), Length(max=120)])
    role = SelectField(_l("Role"), choices=STAFF_ROLE_CHOICES, default="viewer")


class StaffRoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=STAFF_ROLE_CHOICES)


RELAY_SCOPES = ("all", "merchant", "appid")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class RelayRouteForm(FlaskForm):
    """A relay route; token and secret are write-only (blank keeps the stored one on edit)."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    url = URLField(
        _l("Target URL"),
        validators=[DataRequired(), Length(max=2048)],
        description=_l("The business service's address, http or https."),
    )
    format = SelectField(
        _l("Format"), choices=[SelectChoice(f, VOCABULARIES["relay_format"][f]) for f in FORMATS]
    )
    mode = SelectField(
        _l("Mode"),
        choices=[SelectChoice(m, VOCABULARIES["relay_mode"][m]) for m in MODES],
        default="async",  # any number of async routes; at most one reply route per message
        description=_l(
            "Passive reply: at most one route per message, answered within the reply budget. "
            "Asynchronous: delivered in order with retries; no reply to WeChat."
        ),
    )
    token = PasswordField(
        _l("Token (WeChat plaintext mode)"),
        validators=[Optional(), Length(max=128)],
        description=_l("Leave blank to have one generated; it is shown once after saving."),
    )
    secret = PasswordField(
        _l("Signing secret (JSON)"),
        validators=[Optional(), Length(max=128)],
        description=_l("Leave blank to have one generated; it is shown once after saving."),
    )
    # Shown only when there are several third-party platforms (see `several_platforms`).
    component_appid = SelectField(
        _l("Platform"),
        validate_choice=False,  # the relay service checks the platform
        description=_l("Only the accounts authorized to this third-party platform, or to any."),
    )
    scope = RadioField(
        _l("Accounts"),
        choices=[SelectChoice(s, VOCABULARIES["relay_scope"][s]) for s in RELAY_SCOPES],
        default="all",
    )
    merchant_id = SelectField(_l("Merchant"), coerce=_int_or_none, validate_choice=False)
    authorizer_appid = StringField(
        _l("Account appid"), validators=[Optional(), Length(max=64)], filters=[_strip]
    )
    msg_types = StringField(
        _l("Message and event types"),
        validators=[Optional(), Length(max=1000)],
        description=_l("Comma-separated, e.g. text, image, event.subscribe. Empty: every type."),
    )

    def __init__(self, *args, merchants=(), platforms=None, editing=False, **kwargs):
        """`platforms`: names by component appid; the platform choice is offered only when
        there are several (else routes serve every platform, as before)."""
        super().__init__(*args, **kwargs)
        self.merchant_id.choices = [SelectChoice("", _l("Choose a merchant"))] + [
            SelectChoice(str(m.id), f"{m.name} (#{m.id})") for m in merchants
        ]
        platforms = platforms or {}
        self.several_platforms = len(platforms) > 1
        self.component_appid.choices = [SelectChoice("", _l("All platforms"))] + [
            SelectChoice(appid, f"{name} ({appid})") for appid, name in platforms.items()
        ]
        if editing:
            keep = _l("Leave blank to keep the current one.")
            self.token.description = self.secret.description = keep
            self.url.description = _l(
                "Shown without its query string, which may hold a key: leave the address as it "
                "is to keep the query, or enter the whole new address."
            )

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.scope.data == "merchant" and not self.merchant_id.data:
            self.merchant_id.errors.append(_l("Choose the merchant whose accounts it serves."))
            ok = False
        if self.scope.data == "appid" and not self.authorizer_appid.data:
            self.authorizer_appid.errors.append(_l("Enter the account's appid."))
            ok = False
        return ok

    def values(self) -> dict:
        """The route's settings as the relay services take them (token and secret apart; the
        platform only when it was offered, so that an edit never drops one unseen)."""
        values = {
            "name": self.name.data.strip(),
            "url": self.url.data.strip(),
            "format": self.format.data,
            "mode": self.mode.data,
            "merchant_id": self.merchant_id.data if self.scope.data == "merchant" else None,
            "authorizer_appid": self.authorizer_appid.data if self.scope.data == "appid" else None,
            "msg_types": [t.strip() for t in (self.msg_types.data or "").split(",") if t.strip()],
        }
        if self.several_platforms:
            values["component_appid"] = self.component_appid.data or None
        return values

    def credentials(self) -> dict:
        """The token and secret typed in (only those not left blank)."""
        return {k: getattr(self, k).data for k in ("token", "secret") if getattr(self, k).data}

    @classmethod
    def scope_of(cls, route) -> str:
        if route.authorizer_appid:
            return "appid"
        return "merchant" if route.merchant_id else "all"


# --- third-party platforms (#16): keys are write-only, never rendered back ----------------------

_APPID_HINT = _l("wx followed by letters and digits, as in the WeChat Open Platform console.")
_PURPOSE_HINT = _l("What it is for, in a few words merchants understand.")


def _appsecret(first) -> PasswordField:
    return PasswordField(_l("AppSecret"), validators=[first, Length(max=128)])


def _token(first) -> PasswordField:
    rule = Regexp(r"^[0-9A-Za-z]{3,32}$", message=_l("Use 3 to 32 letters and digits."))
    return PasswordField(_l("Message token"), validators=[first, rule])


def _aes_key(first) -> PasswordField:
    rule = Regexp(r"^[0-9A-Za-z]{43}$", message=_l("An EncodingAESKey is 43 letters and digits."))
    return PasswordField(_l("EncodingAESKey"), validators=[first, rule])


def _required() -> DataRequired:
    return DataRequired(message=_l("Required."))


def _sets_field(label) -> MultiCheckboxField:
    return MultiCheckboxField(label, validate_choice=False)  # the service names unknown ids


class PlatformSetsForm(FlaskForm):
    """The permission sets a platform offers and requires, ticked from the catalog; none
    ticked means the configured default. Required ones must be offered. PlatformAddForm asks
    them too."""

    offered_set_ids = _sets_field(_l("Permission sets it offers"))
    required_set_ids = _sets_field(_l("Permission sets it requires"))

    def __init__(self, *args, locale=None, **kwargs):
        super().__init__(*args, **kwargs)
        _set_choices(self, locale)

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        return _sets_valid(self) and ok  # every error shown at once

    def sets(self) -> dict:
        """The ticked sets as `platforms.set_permission_sets` takes them."""
        return {"offered": self.offered_set_ids.data, "required": self.required_set_ids.data}


class PlatformAddForm(PlatformSetsForm):
    """A new third-party platform: its AppID, name and purpose, its three keys and the
    permission sets it offers and requires (none ticked: the configured ones)."""

    component_appid = StringField(
        _l("Component AppID"),
        validators=[_required(), Regexp(r"^wx[0-9A-Za-z]{4,62}$", message=_APPID_HINT)],
        filters=[_strip],
        description=_APPID_HINT,
    )
    name = StringField(_l("Name"), validators=[_required(), Length(max=64)], filters=[_strip])
    purpose = StringField(
        _l("Purpose"),
        validators=[Optional(), Length(max=200)],
        filters=[_strip],
        description=_PURPOSE_HINT,
    )
    appsecret = _appsecret(_required())
    token = _token(_required())
    encoding_aes_key = _aes_key(_required())

    def values(self) -> dict:
        """The inputs as `platforms.add` takes them."""
        return {name: field.data for name, field in self._fields.items() if name != "csrf_token"}


class PlatformForm(FlaskForm):
    """What staff record about a platform: name, purpose, release state, test accounts."""

    name = StringField(_l("Name"), validators=[_required(), Length(max=64)], filters=[_strip])
    purpose = StringField(
        _l("Purpose"),
        validators=[Optional(), Length(max=200)],
        filters=[_strip],
        description=_PURPOSE_HINT,
    )
    release_state = RadioField(
        _l("Release state"),
        choices=[SelectChoice(s, VOCABULARIES["platform_release"][s]) for s in RELEASE_STATES],
        description=_l(
            "As the WeChat Open Platform console shows it (WeChat has no API for it). "
            "Recording “released” dates the release today."
        ),
    )
    test_accounts = TextAreaField(
        _l("Test accounts"),
        validators=[Optional(), Length(max=20000)],
        description=_l(
            "The appids that may authorize it before its release, one per line, as entered in "
            "the WeChat Open Platform console."
        ),
        render_kw={"rows": 6, "spellcheck": "false"},
    )

    def validate_test_accounts(self, field) -> None:
        try:
            platforms.clean_test_accounts(self.test_account_lines())
        except platforms.InvalidTestAccounts as error:
            message = _("Not an appid: %(values)s. Enter one appid per line: wx followed by "
                        "letters and digits.", values=", ".join(error.invalid))  # fmt: skip
            raise ValidationError(message) from None

    def test_account_lines(self) -> list[str]:
        return (self.test_accounts.data or "").splitlines()


class PlatformKeysForm(FlaskForm):
    """New keys for a platform: a blank field keeps the stored key."""

    appsecret = _appsecret(Optional())
    token = _token(Optional())
    encoding_aes_key = _aes_key(Optional())

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if ok and not self.new_keys():
            self.form_errors.append(_l("Enter at least one new key; blank fields keep theirs."))
            ok = False
        return ok

    def new_keys(self) -> dict:
        """The keys typed in (those left blank are kept)."""
        return {name: self[name].data for name in platforms.KEY_FIELDS if self[name].data}


def _set_choices(form, locale) -> None:
    choices = [SelectChoice(str(s.id), f"{s.id} · {s.name(locale)}")
               for s in permissions.catalog().values()]  # fmt: skip
    form.offered_set_ids.choices = form.required_set_ids.choices = choices
    # Shown by account type (some names exist for both, with other ids).
    form.set_groups = [
        (_l("Official Account"), _ids_of("official_account")),
        (_l("Mini Program"), _ids_of("mini_program")),
    ]


def _sets_valid(form) -> bool:
    try:
        platforms.clean_permission_sets(form.offered_set_ids.data, form.required_set_ids.data)
    except platforms.InvalidPermissionSets as error:
        if error.unknown:
            form.form_errors.append(_("Unknown permission sets: %(ids)s. Tick only the sets "
                                      "listed.", ids=", ".join(error.unknown)))  # fmt: skip
        if error.not_offered:
            ids = ", ".join(map(str, error.not_offered))
            form.required_set_ids.errors.append(
                _("A required set must be offered too: %(ids)s.", ids=ids)
            )
        return False
    return True


def _ids_of(account_type: str) -> set[str]:
    return {str(s.id) for s in permissions.for_account_type(account_type)}
