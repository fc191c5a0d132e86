"""`flask platform add|list`: the provider's third-party platforms (issue #16)."""

from __future__ import annotations

import click

from app.extensions import db
from app.services.platform import platforms

ACTOR = "cli"


@click.group("platform")
def platform_group() -> None:
    """Third-party platforms served by this deployment (the default one is WECHAT_*)."""


@platform_group.command("add")
@click.option("--appid", required=True, help="The platform's component AppID (wx...).")
@click.option("--secret", required=True, help="Its AppSecret (stored encrypted).")
@click.option("--token", required=True, help="Its message-check token (stored encrypted).")
@click.option("--aes-key", required=True, help="Its EncodingAESKey, 43 characters.")
@click.option("--name", required=True, help="The name merchants and staff see.")
@click.option("--purpose", default=None, help="What it is for, shown to merchants.")
@click.option(
    "--offers",
    default="",
    metavar="IDS",
    help="Permission sets it offers, e.g. 1,2,3 (default: PLATFORM_PERMISSION_SETS).",
)
@click.option("--requires", default="", metavar="IDS",
              help="Permission sets it requires, among those it offers, e.g. 1,2 "
                   "(default: REQUIRED_PERMISSION_SETS_*).")  # fmt: skip
def add(appid, secret, token, aes_key, name, purpose, offers, requires) -> None:
    """Add a platform and print its component AppID."""
    try:
        row = platforms.add_platform(
            component_appid=appid, appsecret=secret, token=token, encoding_aes_key=aes_key,
            name=name, purpose=purpose, actor=ACTOR,
            offered_set_ids=offers.split(","), required_set_ids=requires.split(","),
        )  # fmt: skip
    except platforms.PlatformError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(row.component_appid)


@platform_group.command("list")
def list_() -> None:
    """List platforms: AppID, name, status, release state, default (never a secret)."""
    header = ("component_appid", "name", "status", "release", "default")
    platforms.default_row()  # as on start: the WECHAT_* variables describe the default one
    db.session.commit()
    rows = [
        (row.component_appid, row.name, row.status, row.release_state,
         "yes" if platforms.is_default(row.component_appid) else "no")
        for row in platforms.all_platforms()
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
