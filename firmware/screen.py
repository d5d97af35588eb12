# What the screen shows, drawn with framebuf on a 1-bit buffer (MONO_HLSB,
# 1 = lit) laid out from the board's resolution (128x64 at the least).
#
# The device has no CJK font. Everything in Chinese arrives from the gateway
# as bitmaps kept on flash (store.py): slot 0 the staff card (name, 工号,
# window and the QR code), 1 the rating prompt, 2 thanks, 3 the reason-page
# title, 16 + i the label of reason i. The device draws only ASCII with
# framebuf's 8x8 font: key numbers, check boxes, its id, fallbacks.
#
# Areas a gateway should render its bitmaps for (W x H = the resolution):
#   card    W x H, centred            prompt  W x (H - 10), top, centred
#   thanks  W x H, centred            title   (W - 40) x 9, top left
#   reason label  (W - 20) x ((H - 19) // 4), one per row
# Larger bitmaps are clipped to their area, never drawn over another.
#
# Views: unpaired, idle, invited, reasons, thanks, full (docs/link.md).
# The bottom line labels the five buttons where they sit, left to right.

import framebuf

from firmware import rating, store

_HLSB = framebuf.MONO_HLSB
# ASCII labels of the fallback reasons (rating.FALLBACK), in docs/design.md order:
# 服务态度差 · 办事效率低、等待时间长 · 业务不熟练、解释不清楚 · 未一次性告知、需多次跑 ·
# 要求提供指南以外材料 · 未在承诺时限内办结 · 窗口空岗、推诿扯皮 · 其他问题. One string,
# split when drawn: a tuple of eight strings would hold 1 KB of heap.
LABELS = "Rude service|Slow, waiting|Unclear/unsure|Not told once|Extra papers" \
         "|Past deadline|Desk empty|Other"


buf = fb = None
w = h = 0


def init(width, height, frame):
    global buf, fb, w, h
    w = width
    h = height
    buf = frame  # (w + 7) // 8 * h bytes
    fb = framebuf.FrameBuffer(buf, w, h, _HLSB)


def image(slot, x, y, maxw, maxh, centre=False):
    """Blit a stored bitmap clipped to maxw x maxh; False if none. Row by
    row through a small buffer, so a full-screen card costs no 1 KB block."""
    bm = store.bitmap(slot)
    if bm is None:
        return False
    bw, bh, f = bm
    cw = min(bw, maxw)
    ch = min(bh, maxh)
    if centre:
        x += (maxw - cw) // 2
        y += (maxh - ch) // 2
    stride = (bw + 7) // 8
    row = bytearray(stride)
    one = framebuf.FrameBuffer(row, cw, 1, _HLSB, bw)
    for r in range(ch):
        f.readinto(row)
        fb.blit(one, x, y + r)
    f.close()
    return True


def text(s, y, x=-1, c=1):
    # x = -1: centred. Over button k (0 = leftmost): x = -2 - k.
    if x < -1:
        x = (-3 - 2 * x) * w // 10 - 4 * len(s)
    elif x < 0:
        x = (w - 8 * len(s)) // 2
    fb.text(s, x, y, c)


def draw(view, dev):
    ev = dev.ev
    fb.fill(0)
    if view == "unpaired" or view == "full":
        # A lit title bar with dark text reads as a warning from afar.
        fb.fill_rect(0, 0, w, 10, 1)
        if view == "full":
            text("STORAGE FULL", 1, -1, 0)
            text("Call technician", 20)
            text("unsent %d" % len(dev.journal.live), 36)
            return
        # No key: only the technician's USB cable can help (hcp tool provision).
        text("NOT PAIRED" if dev.link.key else "NO KEY", 1, -1, 0)
        fb.text("Device ID:", 0, 14)
        did = dev.device_id
        y = 24
        while did:
            fb.text(did[: w // 8], 0, y)
            did = did[w // 8 :]
            y += 9
        fb.text("fw " + dev.fw, 0, h - 8)
    elif view == "idle":
        if not image(0, 0, 0, w, h, True):
            fb.text("Staff " + dev.staff_id, 0, 8)
            fb.text("Window " + dev.window, 0, 20)
    elif view == "thanks":
        if not image(2, 0, 0, w, h, True):
            text("Thank you!", h // 2 - 4)
    elif view == "invited":
        if not image(1, 0, 0, w, h - 10, True):
            text("Please rate", 12)
            text("our service", 24)
        if ev.cases > 1:  # a batch: one rating for all its cases
            fb.text("x%d" % ev.cases, w - 8 * len("x%d" % ev.cases), 0)
        for k in range(5):
            text("%d*" % (5 - k), h - 8, -2 - k)
    else:  # reasons
        n = len(ev.reasons)
        pages = (n + rating.PAGE - 1) // rating.PAGE
        if not image(3, 0, 0, w - 40, 9):
            fb.text("Why?", 0, 0)
        fb.text("%d/%d" % (ev.page + 1, pages), w - 24, 0)
        rh = (h - 19) // 4
        for k in range(rating.PAGE):
            i = ev.page * rating.PAGE + k
            if i >= n:
                break
            y = 10 + k * rh
            fb.text("%d" % (k + 1), 0, y + (rh - 8) // 2)
            fb.rect(10, y + (rh - 7) // 2, 7, 7, 1, bool(ev.picked & (1 << i)))
            if not image(16 + i, 20, y, w - 20, rh):
                label = LABELS.split("|")[i] if ev.reasons is rating.FALLBACK else ev.reasons[i]
                fb.text(label, 20, y + (rh - 8) // 2)
            text("%d" % (k + 1), h - 8, -2 - k)
        text("OK" if ev.page + 1 >= pages and ev.picked else ">>", h - 8, -6)
