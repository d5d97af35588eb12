"""A model of the SSD1306 / SSD1309 OLED controller on I2C, as a virtual
board's panel (simulator/board.py feeds it the transactions the firmware's
driver writes through the virtual `machine.I2C`).

It parses the byte stream as the controller does — a control byte (Co,
D/C#) then commands or GDDRAM data — keeps the 128 x 64 GDDRAM (8 pages of
128 column bytes, bit 0 the top row of a page) and the settings that
decide what the glass shows: display on/off, contrast, charge pump (the
SSD1306's only: without it the panel stays dark; the SSD1309 has none and
ignores 0x8D), memory addressing mode with its column and page windows,
page-mode start addresses, display start line, segment remap, COM scan
direction, multiplex ratio, display offset, COM pin configuration,
normal/inverse and entire-display-on. `image()` is what a person sees:
rows of 0/1 (1 = lit), and `pbm()` the same as a P4 file with lit pixels
white (PBM 0), as the sim board's screen.pbm.

The glass is wired as on the common 128 x 64 modules: upside down to the
chip (the usual segment remap 0xA1 and COM scan 0xC8 show GDDRAM upright;
0xA0 / 0xC0 show it mirrored) and for the alternative COM pin
configuration (0xDA 0x12; sequential 0x02 interleaves the rows).
Commands it does not know are counted in `unknown` (with their byte), not
guessed.
"""

# Commands with arguments: opcode -> number of argument bytes.
_ARGS = {0x81: 1, 0x8D: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1,
         0xDA: 1, 0xDB: 1, 0xFD: 1, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5, 0xA3: 2, 0xDC: 1}


class Panel:
    def __init__(self, width=128, height=64, chip="ssd1309"):
        self.width = width
        self.height = height
        self.chip = chip
        self.gddram = bytearray(128 * 8)
        self.power_on_reset()
        self.transactions = 0
        self.unknown = []  # commands not understood (first 32)
        self.writes = 0  # data bytes written to GDDRAM

    def power_on_reset(self):
        """The controller's reset state (datasheet defaults). GDDRAM keeps
        whatever it held (undefined at power-on: left as it was)."""
        self.on = False
        self.contrast = 0x7F
        self.charge_pump = False
        self.mode = 2  # page addressing
        self.col0, self.col1 = 0, 127
        self.page0, self.page1 = 0, 7
        self.col, self.page = 0, 0
        self.start_line = 0
        self.seg_remap = False
        self.com_remap = False
        self.mux = 64
        self.offset = 0
        self.com_alt = True
        self.com_lr = False
        self.inverse = False
        self.entire_on = False
        self.scrolling = False
        self._cmd = []  # a command waiting for its arguments

    # -- the I2C side --------------------------------------------------
    def transaction(self, data):
        """One I2C write addressed to the panel (the address byte stripped).
        True unless it was only NOPs (nothing the glass could show changed)."""
        self.transactions += 1
        if len(data) > 1 and data[0] in (0x00, 0x80) and all(b == 0xE3 for b in data[1:]):
            return False
        i = 0
        n = len(data)
        while i < n:
            control = data[i]
            i += 1
            co = control & 0x80
            dc = control & 0x40
            if co:  # one byte, then another control byte
                if i < n:
                    self._data(data[i]) if dc else self._command(data[i])
                    i += 1
                continue
            for b in data[i:]:
                self._data(b) if dc else self._command(b)
            return True
        return True

    def _command(self, b):
        if self._cmd:
            self._cmd.append(b)
            if len(self._cmd) == 1 + _ARGS[self._cmd[0]]:
                self._apply(self._cmd)
                self._cmd = []
            return
        if b in _ARGS:
            self._cmd = [b]
            return
        self._apply([b])

    def _apply(self, c):
        op = c[0]
        if op in (0xAE, 0xAF):
            self.on = op == 0xAF
        elif op == 0x81:
            self.contrast = c[1]
        elif op == 0x8D:
            if self.chip == "ssd1306":
                self.charge_pump = bool(c[1] & 0x04)
        elif op == 0x20:
            self.mode = c[1] & 3
            self.col, self.page = self.col0, self.page0
        elif op == 0x21:
            self.col0, self.col1 = c[1] & 0x7F, c[2] & 0x7F
            self.col = self.col0
        elif op == 0x22:
            self.page0, self.page1 = c[1] & 7, c[2] & 7
            self.page = self.page0
        elif 0xB0 <= op <= 0xB7:
            self.page = op & 7
        elif op <= 0x0F:
            self.col = (self.col & 0xF0) | op
        elif 0x10 <= op <= 0x1F:
            self.col = (self.col & 0x0F) | ((op & 0x0F) << 4)
        elif 0x40 <= op <= 0x7F:
            self.start_line = op & 0x3F
        elif op in (0xA0, 0xA1):
            self.seg_remap = op == 0xA1
        elif op in (0xA4, 0xA5):
            self.entire_on = op == 0xA5
        elif op in (0xA6, 0xA7):
            self.inverse = op == 0xA7
        elif op == 0xA8:
            if c[1] & 0x3F >= 15:
                self.mux = (c[1] & 0x3F) + 1
        elif op in (0xC0, 0xC8):
            self.com_remap = op == 0xC8
        elif op == 0xD3:
            self.offset = c[1] & 0x3F
        elif op == 0xDA:
            self.com_alt = bool(c[1] & 0x10)
            self.com_lr = bool(c[1] & 0x20)
        elif op == 0x2E:
            self.scrolling = False
        elif op == 0x2F:
            self.scrolling = True
        elif op in (0xD5, 0xD9, 0xDB, 0xE3, 0xFD, 0x26, 0x27, 0x29, 0x2A, 0xA3, 0xDC):
            pass  # timing, voltages, NOP, lock, scroll set-up: nothing to see
        elif len(self.unknown) < 32:
            self.unknown.append(op)

    def _data(self, b):
        self.writes += 1
        self.gddram[self.page * 128 + self.col] = b
        if self.mode == 0:  # horizontal: column, then page, within the windows
            if self.col >= self.col1:
                self.col = self.col0
                self.page = self.page0 if self.page >= self.page1 else self.page + 1
            else:
                self.col += 1
        elif self.mode == 1:  # vertical: page, then column
            if self.page >= self.page1:
                self.page = self.page0
                self.col = self.col0 if self.col >= self.col1 else self.col + 1
            else:
                self.page += 1
        else:  # page mode: the column wraps within the page
            self.col = 0 if self.col >= 127 else self.col + 1

    # -- the glass -----------------------------------------------------
    def _ram(self, row, col):
        return (self.gddram[(row >> 3) * 128 + col] >> (row & 7)) & 1

    def image(self):
        """What the glass shows: height rows of width 0/1 values, 1 = lit.
        Dark while off, or (SSD1306) while its charge pump is off."""
        w, h = self.width, self.height
        out = [[0] * w for _ in range(h)]
        if not self.on or (self.chip == "ssd1306" and not self.charge_pump):
            return out
        if self.entire_on:
            return [[1] * w for _ in range(h)]
        inv = 1 if self.inverse else 0
        for y in range(h):
            k = self._counter(self._com(y))
            if k is None:
                continue  # a COM line the multiplex ratio does not scan: dark
            ram_row = (k + self.start_line) % 64
            line = out[y]
            for x in range(w):
                seg = 127 - x  # the glass's column x hangs on SEG 127 - x
                col = 127 - seg if self.seg_remap else seg
                line[x] = self._ram(ram_row, col) ^ inv
        return out

    def _com(self, y):
        """The COM line that drives the glass's row y. The module's glass is
        wired upside down to the chip (row y on the pin of row 63 - y: what
        the usual A1/C8 settings put right) and for the alternative COM pin
        configuration; under the sequential one the chip drives those pins
        in another order, so rows come out interleaved."""
        r = 63 - y
        if not self.com_alt:
            r = r // 2 if r % 2 == 0 else 32 + r // 2
        if self.com_lr:
            r = (r + 32) % 64  # left/right remap swaps the halves
        return r

    def _counter(self, com):
        """The row counter (0 .. mux - 1) whose row COM line `com` shows,
        after the display offset and the scan direction; None if none."""
        j = (com + self.offset) % 64
        if j >= self.mux:
            return None
        return self.mux - 1 - j if self.com_remap else j

    def pbm(self):
        """The glass as a P4 PBM, lit pixels white (PBM 0)."""
        rows = self.image()
        stride = (self.width + 7) // 8
        out = bytearray(b"P4\n%d %d\n" % (self.width, self.height))
        for row in rows:
            line = bytearray(stride)
            for x, v in enumerate(row):
                if not v:
                    line[x >> 3] |= 0x80 >> (x & 7)
            out += line
        return bytes(out)
