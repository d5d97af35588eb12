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
# ASCII labels of the fallback reasons (rating.FALLBACK), in DESIGN.md order:
# 服务态度差 · 办事效率低、等待时间长 · 业务不熟练、解释不清楚 · 未一次性告知、需多次跑 ·
# 要求提供指南以外材料 · 未在承诺时限内办结 · 窗口空岗、推诿扯皮 · 其他问题. One string,
# split when drawn: a tuple of eight strings would hold 1 KB of heap.
LABELS = "Rude service|Slow, waiting|Unclear/unsure|Not told once|Extra papers" \
         "|Past deadline|Desk empty|Other"


class Screen:
    def __init__(self, w, h):
        self.w = w
        self.h = h
        self.buf = bytearray((w + 7) // 8 * h)
        self.fb = framebuf.FrameBuffer(self.buf, w, h, _HLSB)

    def image(self, slot, x, y, maxw, maxh, centre=False):
        """Blit a stored bitmap clipped to maxw x maxh; False if none."""
        bm = store.bitmap(slot)
        if bm is None:
            return False
        w, h, data = bm
        cw = min(w, maxw)
        ch = min(h, maxh)
        if centre:
            x += (maxw - cw) // 2
            y += (maxh - ch) // 2
        # Same rows, narrower/shorter view: the stride stays the image's width.
        self.fb.blit(framebuf.FrameBuffer(data, cw, ch, _HLSB, w), x, y)
        return True

    def text(self, s, y, x=-1, c=1):
        # x < 0: centred. Over button k (0 = leftmost): x = -2 - k.
        if x < -1:
            x = (-3 - 2 * x) * self.w // 10 - 4 * len(s)
        elif x < 0:
            x = (self.w - 8 * len(s)) // 2
        self.fb.text(s, x, y, c)

    def draw(self, view, dev):
        fb = self.fb
        w = self.w
        h = self.h
        ev = dev.ev
        fb.fill(0)
        if view == "unpaired" or view == "full":
            # A lit title bar with dark text reads as a warning from afar.
            fb.fill_rect(0, 0, w, 10, 1)
            if view == "full":
                self.text("STORAGE FULL", 1, -1, 0)
                self.text("Call technician", 20)
                self.text("unsent %d" % len(dev.journal.live), 36)
                return
            self.text("NOT PAIRED", 1, -1, 0)
            fb.text("Device ID:", 0, 14)
            did = dev.device_id
            y = 24
            while did:
                fb.text(did[: w // 8], 0, y)
                did = did[w // 8 :]
                y += 9
            fb.text("fw " + dev.fw, 0, h - 8)
        elif view == "idle":
            if not self.image(0, 0, 0, w, h, True):
                fb.text("Staff " + dev.staff_id, 0, 8)
                fb.text("Window " + dev.window, 0, 20)
        elif view == "thanks":
            if not self.image(2, 0, 0, w, h, True):
                self.text("Thank you!", h // 2 - 4)
        elif view == "invited":
            if not self.image(1, 0, 0, w, h - 10, True):
                self.text("Please rate", 12)
                self.text("our service", 24)
            if ev.cases > 1:  # a batch: one rating for all its cases
                fb.text("x%d" % ev.cases, w - 8 * len("x%d" % ev.cases), 0)
            for k in range(5):
                self.text("%d*" % (5 - k), h - 8, -2 - k)
        else:  # reasons
            n = len(ev.reasons)
            pages = (n + rating.PAGE - 1) // rating.PAGE
            if not self.image(3, 0, 0, w - 40, 9):
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
                if not self.image(16 + i, 20, y, w - 20, rh):
                    label = LABELS.split("|")[i] if ev.reasons is rating.FALLBACK else ev.reasons[i]
                    fb.text(label, 20, y + (rh - 8) // 2)
                self.text("%d" % (k + 1), h - 8, -2 - k)
            self.text("OK" if ev.page + 1 >= pages and ev.picked else ">>", h - 8, -6)
