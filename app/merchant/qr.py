"""QR codes as inline SVG (qrcode's path image: no Pillow, no request to another host)."""

import qrcode
import qrcode.image.svg
from markupsafe import Markup


def qr_svg(data: str) -> Markup:
    """An SVG QR code of `data`, sized by CSS."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    svg = image.to_string(encoding="unicode")
    # The wrapper (role=img, aria-label) names the code; the drawing itself is decoration.
    return Markup(svg.replace("<svg ", '<svg aria-hidden="true" focusable="false" ', 1))
