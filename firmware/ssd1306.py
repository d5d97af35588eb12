# The panel driver: an SSD1306 or SSD1309 OLED controller on I2C (the
# boards of boards.toml, driver = "ssd1306"). The project's own, flashed
# with the firmware by `hcp tool flash` like every module here (no `mip`
# step for the technician), and the one the virtual boards' controller
# model tests (simulator/panel.py). Why not micropython-lib's: see
# firmware/README.md "Display driver".
#
# It keeps no framebuffer of its own. The firmware draws in its MONO_HLSB
# buffer (firmware/screen.py); show() converts it to the controller's
# layout (pages of 8 rows, one byte per column, bit 0 on top) a page at a
# time in a 129-byte buffer (the I2C data control byte, then the page),
# with framebuf's blit doing the conversion in C, and streams the pages in
# horizontal addressing mode. A module singleton: its state is its globals.
#
# Every call may raise OSError (the panel NAKs or the bus times out): the
# caller (firmware/hal_machine.py) counts it as a display fault.

import framebuf

i2c = None
addr = 0x3C
width = 128
pages = 8
_buf = _page = None


def init(bus, address, w, h):
    """Remember the bus and the panel; nothing is sent yet (setup())."""
    global i2c, addr, width, pages, _buf, _page
    i2c = bus
    addr = address
    width = w
    pages = h // 8
    _buf = bytearray(1 + w)  # 0x40 (data follow), then one page
    _buf[0] = 0x40
    _page = framebuf.FrameBuffer(memoryview(_buf)[1:], w, 8, framebuf.MONO_VLSB)


def setup():
    """Put the controller in a known state and turn the panel on: after
    power-on, and again after a fault (a panel plugged back in, or one that
    lost power, has forgotten everything)."""
    i2c.writeto(addr, bytes((
        0x00,  # control byte: commands follow
        0xAE,  # display off while it is set up
        0x20, 0x00,  # horizontal addressing: show() streams all pages
        0x40,  # display start line 0
        0xA1,  # segment remap: column 127 on SEG0 (the modules' glass is mounted so)
        0xA8, pages * 8 - 1,  # multiplex ratio: the panel's rows
        0xC8,  # COM scan from COM[N-1]: with A1, the picture upright
        0xD3, 0x00,  # no display offset
        0xDA, 0x12 if pages == 8 else 0x02,  # COM pins: alternative on 64 rows
        0xD5, 0x80,  # clock divide / oscillator: the reset value
        0xD9, 0xF1,  # pre-charge
        0xDB, 0x30,  # VCOMH deselect level
        0x81, 0xFF,  # contrast
        0xA4,  # show GDDRAM
        0xA6,  # not inverted
        0x8D, 0x14,  # charge pump on (SSD1306; the SSD1309 ignores it)
        0xAF,  # display on
    )))


def show(src):
    """Send the MONO_HLSB FrameBuffer `src` (width x pages*8) to the panel."""
    i2c.writeto(addr, bytes((0x00, 0x21, 0, width - 1, 0x22, 0, pages - 1)))
    for p in range(pages):
        _page.blit(src, 0, -8 * p)
        i2c.writeto(addr, _buf)


def probe():
    """A NOP: is the panel there (an OSError if not)."""
    i2c.writeto(addr, b"\x00\xe3")


def power(on):
    i2c.writeto(addr, bytes((0x00, 0xAF if on else 0xAE)))


def contrast(c):
    i2c.writeto(addr, bytes((0x00, 0x81, c & 0xFF)))
