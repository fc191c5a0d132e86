"""`flask relay add|list|remove`: the message relay's routes from the command line (issue #15)."""

from __future__ import annotations

import click
from flask_babel import force_locale

from app.extensions import db
from app.models import RelayRoute
from app.models.relay import FORMATS, MODES
from app.services.relay import routes

ACTOR = "cli"


@click.group("relay")
def relay_group() -> None:
    """Relay routes: where authorized accounts' messages go."""


@relay_group.command("add")
@click.option("--url", required=True, help="The service's URL (http or https).")
@click.option("--format", "format_", type=click.Choice(FORMATS), required=True)
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--token", default=None, help="wechat-xml: the plaintext-mode token (generated).")
@click.option("--secret", default=None, help="json: the HMAC signing secret (generated).")
@click.option("--merchant", "merchant_id", type=int, default=None, help="Only this merchant.")
@click.option("--appid", default=None, help="Only this account.")
@click.option(
    "--platform",
    "component_appid",
    default=None,
    help="Only this third-party platform's accounts (its component appid; default: all).",
)
@click.option("--types", default="", help="e.g. text,image,event.subscribe (default: all).")
@click.option("--name", default="", help="A label (default: the URL's host).")
def add(
    url, format_, mode, token, secret, merchant_id, appid, component_appid, types, name
) -> None:
    """Add a route and print its id (a generated token or secret goes to stderr, once)."""
    try:
        route = routes.create_route(
            name=name, url=url, format=format_, mode=mode, token=token, secret=secret,
            merchant_id=merchant_id, authorizer_appid=appid, component_appid=component_appid,
            msg_types=types, actor=ACTOR,
        )  # fmt: skip
    except routes.RouteError as error:
        db.session.rollback()
        with force_locale("en"):
            raise click.ClickException(str(error.message)) from None
    if route.generated_credential:
        label = "token" if route.format == "wechat-xml" else "secret"
        click.echo(f"Generated {label} (shown once): {route.generated_credential}", err=True)
    click.echo(route.id)


@relay_group.command("list")
def list_() -> None:
    """List routes: id, name, format, mode, platform ("*": all), scope, types, paused (never
    tokens or secrets)."""
    header = ("id", "name", "format", "mode", "platform", "scope", "types", "paused")
    rows = [
        (str(route.id), route.name, route.format, route.mode, routes.platform_label(route),
         routes.scope_label(route), ",".join(route.msg_types or ()) or "*",
         "yes" if route.paused else "no")
        for route in routes.list_routes()
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@relay_group.command("remove")
@click.argument("route_id", type=int)
def remove(route_id: int) -> None:
    """Delete a route (its pending deliveries with it)."""
    route = db.session.get(RelayRoute, route_id)
    if route is None:
        raise click.ClickException(f"no relay route {route_id}")
    routes.delete_route(route, actor=ACTOR)
    click.echo(f"Removed relay route {route_id}", err=True)
