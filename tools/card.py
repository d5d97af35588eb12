"""Render what an evaluator's screen shows, on the host, as 1-bit bitmaps.

The device has no CJK font (DESIGN §3): the staff card — name, 工号, window and
the QR code bound to the staff account (一码一账号) — and the prompt and reason
strings are drawn here and sent to the device as `bitmap` frames in framebuf's
MONO_HLSB layout (rows top to bottom, MSB = leftmost pixel, 1 = lit).

The QR code is drawn dark modules on a lit background, at the largest whole
number of pixels per module that fits the panel with a quiet zone of at least
two modules. A module smaller than 0.4 mm on the panel (pixel pitch from the
board's width_mm / width) is too small for a phone camera, and pairing is
refused, as it is for a URL that does not fit at all.

Text uses GNU Unifont (Debian `fonts-unifont`): a bitmap font whose 16 px
glyphs land exactly on the pixel grid, so nothing is lost to thresholding.
"""

import os
import shutil
import subprocess

import segno
from PIL import Image, ImageDraw, ImageFont

MIN_MODULE_MM = 0.4
QUIET_MODULES = 2
FONT_PX = 16
_FONT_PATHS = (
    "/usr/share/fonts/opentype/unifont/unifont.otf",
    "/usr/share/fonts/truetype/unifont/unifont.ttf",
)


class CardError(ValueError):
    """The card cannot be drawn as asked; the message says why and what to do."""


def font_path():
    env = os.environ.get("HCP_FONT")
    if env:
        return env
    for path in _FONT_PATHS:
        if os.path.exists(path):
            return path
    if shutil.which("fc-match"):
        out = subprocess.run(["fc-match", "-f", "%{file}", "Unifont"], capture_output=True, text=True)
        if out.returncode == 0 and "unifont" in out.stdout.lower() and os.path.exists(out.stdout):
            return out.stdout
    raise CardError("the CJK font GNU Unifont is not installed: apt-get install fonts-unifont "
                    "(`make test` / `make demo` install it)")


def _font():
    return ImageFont.truetype(font_path(), FONT_PX)


class QrPlan:
    """Where and how big the QR code goes on a panel."""

    def __init__(self, qr, scale, pixel_mm):
        self.qr = qr
        self.modules = qr.symbol_size(border=0)[0]
        self.scale = scale  # pixels per module
        self.side = (self.modules + 2 * QUIET_MODULES) * scale  # with the quiet zone
        self.module_mm = scale * pixel_mm


def plan_qr(url, display, max_width=None):
    """Size the QR code of `url` for `display` (a boards.toml [board.display]
    table) within `max_width` pixels (default: the whole width). Raises
    CardError when it cannot fit or would be too small for a phone."""
    if not url:
        raise CardError("the evaluation URL is empty: set [pairing] url_template in the gateway config")
    try:
        qr = segno.make(url, error="m", boost_error=True, micro=False)
    except segno.DataOverflowError as err:
        raise CardError("the URL is too long for any QR code: %s" % err) from err
    width, height = int(display["width"]), int(display["height"])
    pixel_mm = min(float(display["width_mm"]) / width, float(display["height_mm"]) / height)
    modules = qr.symbol_size(border=0)[0]
    room = min(height, max_width or width)
    scale = room // (modules + 2 * QUIET_MODULES)
    hint = ("use a shorter evaluation URL template; upper-case alphanumeric URLs "
            "(e.g. HTTPS://HALL.EXAMPLE/E/S1024) make the smallest codes")
    if scale < 1:
        raise CardError("URL %r needs a %d-module QR code (version %d) plus a %d-module quiet "
                        "zone: %d px, but the panel has %d px; %s"
                        % (url, modules, qr.version, QUIET_MODULES, modules + 2 * QUIET_MODULES, room, hint))
    if scale * pixel_mm < MIN_MODULE_MM:
        raise CardError("on this %d x %d panel (%.2f mm pixels) URL %r gets %d px per module = "
                        "%.2f mm, under the %.1f mm a phone needs; %s"
                        % (width, height, pixel_mm, url, scale, scale * pixel_mm, MIN_MODULE_MM, hint))
    return QrPlan(qr, scale, pixel_mm)


def _fit(draw, font, text, width):
    """Longest prefix of text that fits in width px (with … if cut)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""


def render_card(name, staff_id, window, url, display):
    """The staff card: QR code on the left, name / 工号 / window on the right.
    Returns a PIL image in mode "1" (1 = lit)."""
    width, height = int(display["width"]), int(display["height"])
    text_min = 4 * FONT_PX  # leave room for four CJK characters
    plan = plan_qr(url, display, max_width=width - text_min)
    img = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(img)
    top = (height - plan.side) // 2
    draw.rectangle([0, top, plan.side - 1, top + plan.side - 1], fill=1)  # lit background
    q = QUIET_MODULES * plan.scale
    for y, row in enumerate(plan.qr.matrix):
        for x, dark in enumerate(row):
            if dark:
                x0, y0 = q + x * plan.scale, top + q + y * plan.scale
                draw.rectangle([x0, y0, x0 + plan.scale - 1, y0 + plan.scale - 1], fill=0)
    font = _font()
    left = plan.side + 2
    room = width - left
    id_line = "工号" + staff_id
    if draw.textlength(id_line, font=font) > room:
        id_line = staff_id
    lines = [name, id_line, "窗口" + window, "扫码评价"]
    rows = max(1, height // FONT_PX)
    for i, line in enumerate(lines[:rows]):
        draw.text((left, i * FONT_PX), _fit(draw, font, line, room), font=font, fill=1)
    return img


def render_text(text, width, height=FONT_PX, center=True):
    """One line of text (a prompt, a reason label) as a 1-bit image."""
    font = _font()
    img = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(img)
    text = _fit(draw, font, text, width)
    x = (width - draw.textlength(text, font=font)) // 2 if center else 0
    draw.text((x, (height - FONT_PX) // 2), text, font=font, fill=1)
    return img


def to_mono_hlsb(img):
    """(width, height, bytes) in framebuf MONO_HLSB, 1 = lit: PIL's mode "1"
    raw layout is exactly that (rows padded to whole bytes, MSB first)."""
    img = img.convert("1")
    return img.width, img.height, img.tobytes()


def from_mono_hlsb(width, height, data):
    return Image.frombytes("1", (width, height), bytes(data))
