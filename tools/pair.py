"""Pairing a device with one staff account (一码一账号), as a library: the
technician CLI (`hcp tool pair`) and the simulator both call it.

The screens the device shows are drawn here, on the host (the device has no
CJK font): slot 0 the staff card with the QR code of the staff member's
evaluation URL, slot 1 the rating prompt, 2 the thanks, 3 the title of the
差评 reason pages, 16 + i the label of reason i (protocol/README.md,
"bitmap"). The gateway keeps them and sends them to the device with `bind`.
"""

import base64

from gateway.client import ClientError
from gateway.settings import DEFAULT_URL_TEMPLATE, url_template_problem
from tools import card

PROMPT = "请您对本次服务评价"
THANKS = "感谢您的评价"
REASONS_TITLE = "请选择不满意原因"
REASON_LABEL_INSET = 24  # px the device keeps left of a reason label for "1[x]"


class PairError(RuntimeError):
    """Pairing refused or impossible; the message says why."""


def evaluation_url(template, staff_id, window="", device_id=""):
    """The staff card's QR URL from a template the config's schema accepts
    (gateway.settings.url_template_problem: the one check of it)."""
    problem = url_template_problem(template)
    if problem:
        raise PairError("URL template %r: %s" % (template, problem))
    return template.format(staff_id=staff_id, window=window, device_id=device_id)


def _bitmap(slot, img):
    w, h, data = card.to_mono_hlsb(img)
    return {"slot": slot, "width": w, "height": h, "data": base64.b64encode(data).decode("ascii")}


def screens(staff_name, staff_id, window, url, display, reasons=()):
    """Every bitmap the device needs for this binding, as API dicts.
    `reasons`: [(code, label), ...] in the order of the gateway's config.
    Raises card.CardError when the QR code cannot be drawn phone-readable."""
    width = int(display["width"])
    out = [_bitmap(0, card.render_card(staff_name, staff_id, window, url, display)),
           _bitmap(1, card.render_text(PROMPT, width)),
           _bitmap(2, card.render_text(THANKS, width)),
           _bitmap(3, card.render_text(REASONS_TITLE, width))]
    for i, (_, label) in enumerate(reasons):
        out.append(_bitmap(16 + i, card.render_text(label, width - REASON_LABEL_INSET, center=False)))
    return out


def pair(api, device_id, staff_id, staff_name, window, display, url_template=DEFAULT_URL_TEMPLATE,
         reasons=(), replace=False):
    """Bind through the gateway API (a gateway.client.Client). Returns the
    gateway's answer; raises PairError with the current binding on refusal."""
    url = evaluation_url(url_template, staff_id, window, device_id)
    try:
        bitmaps = screens(staff_name, staff_id, window, url, display, reasons)
    except card.CardError as err:
        raise PairError(str(err)) from err
    try:
        body = api.need("POST", "/api/pair", {
            "device_id": device_id, "staff_id": staff_id, "staff_name": staff_name, "window": window,
            "replace": bool(replace), "bitmaps": bitmaps})
    except ClientError as err:
        current = err.body.get("current") if isinstance(err.body, dict) else None
        raise PairError("%s%s" % (err, "; current binding: %s" % current if current else "")) from err
    return dict(body or {}, url=url)
