"""Command-line tasks: first staff user, merchants and invitations, demo data, key rotation."""

import click
from flask import Flask, current_app, url_for

from app import database
from app.extensions import db
from app.models import Merchant, StaffRole
from app.services import accounts
from app.services.platform import provider

DEMO_PASSWORD = "grantdesk-demo"
DEMO_PROVIDER_NAME = "云帆互动 Yunfan Digital"
DEMO_USERS = {
    "staff": "staff@grantdesk.example.com",
    "merchants": [
        ("杭州云栖茶业有限公司", "admin@yunqi-tea.example.com"),
        ("Shanghai Bund Bakery Co.", "admin@bund-bakery.example.com"),
    ],
}


def register_commands(app: Flask) -> None:
    """Attach the commands to `flask`."""
    from app import jobs  # worker, run-job, health

    for command in (create_staff, create_merchant, invite, seed_demo, rotate_keys, *jobs.COMMANDS):
        app.cli.add_command(command)
    from app.cli_volume import seed_volume_command  # staff console volume (issue #8)

    app.cli.add_command(seed_volume_command)
    from app.cli_relay import relay_group  # message relay routes (issue #15)

    app.cli.add_command(relay_group)
    from app.cli_platform import platform_group  # several platforms (issue #16)

    app.cli.add_command(platform_group)


def _invitation_url(token: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    with current_app.test_request_context(base_url=base):
        return url_for("auth.accept_invitation", token=token, _external=True)


def _external_url(endpoint: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    with current_app.test_request_context(base_url=base):
        return url_for(endpoint, _external=True)


@click.command("create-staff")
@click.option("--email", prompt=True)
@click.option("--name", default="")
@click.option(
    "--role",
    type=click.Choice([r.value for r in StaffRole]),
    default=StaffRole.ADMIN.value,
    show_default=True,
    help="viewer reads, operator acts on accounts, admin manages users, keys and settings",
)
@click.password_option()
def create_staff(email: str, name: str, role: str, password: str) -> None:
    """Create a provider staff user (the first one, or more)."""
    try:
        user = accounts.create_staff_user(email, password, name, staff_role=role)
    except accounts.EmailTaken:
        raise click.ClickException(f"{email} already has an account") from None
    except accounts.WeakPassword as error:
        raise click.ClickException(
            f"password must be at least {error.details['min_length']} characters"
        ) from None
    click.echo(f"Created staff user {user.email} ({user.staff_role.value})")
    enrollment = _external_url("auth.two_factor.enroll")
    if current_app.config["GRANTDESK_STAFF_MFA"] == "required":
        click.echo(
            f"Two-factor sign-in is required: sign in at {_external_url('auth.login')} and the"
            f" first sign-in goes straight to enrollment ({enrollment}): scan the QR code with an"
            " authenticator app, enter its code, and keep the ten recovery codes."
        )
    else:
        click.echo(f"Set up two-factor sign-in after signing in: {enrollment}")


@click.command("create-merchant")
@click.argument("name")
def create_merchant(name: str) -> None:
    """Create a merchant and print its id."""
    merchant = accounts.create_merchant(name)
    click.echo(f"Created merchant {merchant.id}: {merchant.name}")


@click.command("invite")
@click.argument("merchant_id", type=int)
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["merchant_admin", "merchant_viewer"]),
    default="merchant_admin",
    show_default=True,
)
def invite(merchant_id: int, email: str, role: str) -> None:
    """Invite a merchant user, email the link (when MAIL_SERVER is set) and print it."""
    from app.services.access import teams

    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise click.ClickException(f"no merchant {merchant_id}")
    try:
        sent = teams.invite(merchant, email, role)
    except accounts.EmailTaken:
        raise click.ClickException(f"{email} already has an account") from None
    if sent.emailed:
        click.echo(f"Invitation queued for email to {sent.invitation.email}.", err=True)
    click.echo(sent.link)


@click.command("seed-demo")
def seed_demo() -> None:
    """Create the demo staff user and two merchants with admins (idempotent)."""
    if accounts.find_user_by_email(DEMO_USERS["staff"]) is None:
        accounts.create_staff_user(DEMO_USERS["staff"], DEMO_PASSWORD, "演示员工 Demo Staff")
    for name, email in DEMO_USERS["merchants"]:
        if accounts.find_user_by_email(email) is None:
            merchant = accounts.create_merchant(name, email)
            token = accounts.invite_admin(merchant, email)
            accounts.accept_invitation(token, DEMO_PASSWORD, name)
    if provider.current_provider().version == 0:  # nothing stored yet: name the demo provider
        provider.update_provider(DEMO_PROVIDER_NAME, logo_bytes=provider.monogram_png())
    click.echo(f"Demo users (password: {DEMO_PASSWORD}):")
    click.echo(f"  provider staff   {DEMO_USERS['staff']}")
    for _name, email in DEMO_USERS["merchants"]:
        click.echo(f"  merchant admin   {email}")


@click.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every secret column under the newest key in GRANTDESK_ENCRYPTION_KEYS."""
    total = database.reencrypt_all()
    click.echo(f"Re-encrypted {total} values under the newest key.")
