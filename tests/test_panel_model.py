"""The SSD1306/SSD1309 controller model (simulator/panel.py) against the
datasheet's behaviour: control bytes, addressing modes and their windows,
remaps, multiplex, offsets, on/off, charge pump, what it does not know."""

from simulator.panel import Panel


def cmds(p, *bs):
    p.transaction(bytes((0x00,) + bs))


def data(p, bs):
    p.transaction(b"\x40" + bytes(bs))


def upright(chip="ssd1309"):
    """A panel set up as the usual modules want (the driver's set-up)."""
    p = Panel(chip=chip)
    cmds(p, 0xAE, 0x20, 0x00, 0x40, 0xA1, 0xA8, 63, 0xC8, 0xD3, 0, 0xDA, 0x12, 0x8D, 0x14, 0xAF)
    return p


def lit(img):
    return {(x, y) for y, row in enumerate(img) for x, v in enumerate(row) if v}


def test_dark_until_on_and_after_off():
    p = Panel()
    data(p, [0xFF] * 4)
    assert lit(p.image()) == set()  # reset state: display off
    cmds(p, 0xAF)
    assert lit(p.image())
    cmds(p, 0xAE)
    assert lit(p.image()) == set()


def test_horizontal_mode_streams_pages_within_the_window():
    p = upright()
    cmds(p, 0x21, 10, 11, 0x22, 2, 3)
    data(p, [0x01, 0x02, 0x80, 0xFF, 0x01])  # (10,p2) (11,p2) (10,p3) (11,p3), then wraps to (10,p2)
    assert p.gddram[2 * 128 + 10] == 0x01 and p.gddram[2 * 128 + 11] == 0x02
    assert p.gddram[3 * 128 + 10] == 0x80 and p.gddram[3 * 128 + 11] == 0xFF
    img = lit(p.image())
    assert (10, 16) in img and (11, 17) in img and (10, 31) in img
    assert all((11, y) in img for y in range(24, 32))


def test_vertical_and_page_modes():
    p = upright()
    cmds(p, 0x20, 0x01, 0x21, 0, 127, 0x22, 0, 1)
    data(p, [0x01, 0x01, 0x01])  # (0,p0) (0,p1) (1,p0)
    assert (p.gddram[0], p.gddram[128], p.gddram[1]) == (1, 1, 1)
    p = upright()
    cmds(p, 0x20, 0x02, 0xB5, 0x0E, 0x17)  # page 5, column 0x7E
    data(p, [0x01, 0x02, 0x04])  # 126, 127, then wraps to column 0 of the same page
    assert (p.gddram[5 * 128 + 126], p.gddram[5 * 128 + 127], p.gddram[5 * 128]) == (1, 2, 4)


def test_single_byte_control_bytes():
    p = Panel()
    p.transaction(bytes((0x80, 0xAF, 0xC0, 0x03)))  # Co=1: one command, then one data byte
    assert p.on and p.gddram[0] == 0x03


def test_default_remaps_show_the_picture_rotated():
    """A0/C0 (the controller's reset state) on the usual module: 180 degrees."""
    p = upright()
    cmds(p, 0x21, 0, 127, 0x22, 0, 7)
    data(p, [0x01])  # RAM column 0, row 0
    assert lit(p.image()) == {(0, 0)}
    cmds(p, 0xA0, 0xC0)
    assert lit(p.image()) == {(127, 63)}


def test_inverse_entire_on_multiplex_offset_start_line():
    p = upright()
    data(p, [0x01])
    cmds(p, 0xA7)
    assert len(lit(p.image())) == 128 * 64 - 1
    cmds(p, 0xA6, 0xA5)
    assert len(lit(p.image())) == 128 * 64
    cmds(p, 0xA4, 0x41)  # start line 1: RAM row 1 on the top row, row 0 at the bottom
    assert lit(p.image()) == {(0, 63)}
    cmds(p, 0x40, 0xA8, 31)  # COM0-31 scanned, on the lower half of this glass: the upper is dark
    assert lit(p.image()) == {(0, 32)}
    cmds(p, 0xA8, 63, 0xD3, 1)
    assert lit(p.image()) != {(0, 0)}  # the offset moves the picture


def test_charge_pump_is_the_ssd1306s():
    p = Panel(chip="ssd1306")
    cmds(p, 0xAF)
    data(p, [0xFF])
    assert lit(p.image()) == set()  # no charge pump: no light
    cmds(p, 0x8D, 0x14)
    assert lit(p.image())
    q = Panel(chip="ssd1309")
    cmds(q, 0xAF, 0x8D, 0x10)  # the SSD1309 has none: ignored
    data(q, [0xFF])
    assert lit(q.image())


def test_sequential_com_pins_interleave_the_rows():
    p = upright()
    data(p, [0x04])  # RAM row 2
    assert lit(p.image()) == {(0, 2)}
    cmds(p, 0xDA, 0x02)
    assert lit(p.image()) == {(0, 4)}  # the glass's pins carry other COM lines


def test_unknown_commands_are_counted_not_guessed():
    p = upright()
    cmds(p, 0x9F, 0xE3)  # not a command; NOP
    assert p.unknown == [0x9F]
