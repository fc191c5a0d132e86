"""Generated images: account/user avatars and account QR codes, as SVG (no Pillow)."""

import io
from html import escape

import qrcode
import qrcode.image.svg
from flask import Blueprint, Response, abort

from app.sandbox import grants
from app.sandbox.models import WechatUser, db

bp = Blueprint("sandbox_media", __name__, url_prefix="/sandbox/media")


def avatar_svg(text: str, color: str, *, round_: bool = False) -> str:
    """A square (or round) avatar with the first character of `text`."""
    shape = '<circle cx="50" cy="50" r="50"' if round_ else '<rect width="100" height="100" rx="8"'
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100" width="100" height="100">'
        f'{shape} fill="{escape(color)}"/>'
        '<text x="50" y="50" dy=".35em" text-anchor="middle" font-size="46" fill="#fff" '
        'font-family="PingFang SC, Microsoft YaHei, sans-serif">'
        f"{escape(text[:1])}</text></svg>"
    )


def qr_svg(data: str) -> str:
    """A QR code for `data` as an SVG document (qrcode's path factory)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode("utf-8")


def _svg(body: str) -> Response:
    return Response(body, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=3600"})


@bp.get("/avatar/<appid>.svg")
def avatar(appid):
    """An account's avatar (head_img)."""
    account = grants.find_account(appid) or abort(404)
    return _svg(avatar_svg(account.nick_name, account.color))


@bp.get("/qrcode/<appid>.svg")
def account_qr(appid):
    """An account's follow/open QR code (qrcode_url)."""
    account = grants.find_account(appid) or abort(404)
    prefix = (
        "https://mp.weixin.qq.com/a/"
        if account.type == "mini_program"
        else "http://weixin.qq.com/r/"
    )
    return _svg(qr_svg(prefix + account.user_name))


@bp.get("/user/<int:user_id>.svg")
def user_avatar(user_id):
    """A WeChat user's round avatar."""
    user = db.session.get(WechatUser, user_id) or abort(404)
    return _svg(avatar_svg(user.name[-1:] or "?", user.color, round_=True))
