# The ESP32 and RP2040 boards of boards.toml (`hal = "hal_machine"`): five
# buttons on GPIO, an SSD1306/SSD1309 OLED on I2C (firmware/ssd1306.py, the
# project's own driver, flashed with the firmware), the gateway on a UART.
# The same module interface as hal_sim.py, plus:
#
#   fault     1 while the panel does not answer (NAK, bus timeout): the
#             device goes on journaling, thanking and sending without a
#             screen, retries the panel every 2 s, reports it in health;
#             a panel thought fine is asked every 2 s too (a NOP), so one
#             unplugged while nothing is drawn is known within 2 s
#   overruns  times the UART's receive ring was found full when read
#             (bytes arriving then were dropped by the port; the frames
#             they belonged to fail their CRC and are resent)
#
# Each picture shown is also named on the console (the board's USB port):
# "screen <view> [<invitation>]", for whoever looks, and for the virtual
# boards of the simulator (simulator/board.py), which read the view from it
# as the sim board's screen.txt gives it.
#
# Runs on the real ports and, unchanged, on the virtual boards
# (simulator/vboard/machine.py on the unix port). Settings come from
# board.json (the board's table of boards.toml, written by the flashing
# tool) next to main.py.

import time

import machine
from framebuf import MONO_HLSB, FrameBuffer

from firmware import ssd1306

name = "machine"
fault = 0
overruns = 0
RXBUF = 1024
_retry = 0  # when to try the panel again while it is at fault


def init(settings, opts):
    global name, width, height, debounce_ms, stuck_ms, slots, flash, u, src, pins, low
    name = settings.get("name", name)
    d = settings["display"]
    width = d["width"]
    height = d["height"]
    i2c = machine.I2C(d["i2c"], sda=machine.Pin(d["sda"]), scl=machine.Pin(d["scl"]))
    ssd1306.init(i2c, d.get("address", 0x3C), width, height)
    _panel()
    src = None
    b = settings["buttons"]
    debounce_ms = b.get("debounce_ms", 30)
    stuck_ms = b.get("stuck_ms", 5000)
    low = b.get("active_low", True)
    pull = machine.Pin.PULL_UP if low else machine.Pin.PULL_DOWN
    pins = [machine.Pin(p, machine.Pin.IN, pull) for p in b["pins"]]
    s = settings.get("storage") or {}
    flash = s.get("dir", "/").rstrip("/") or ""
    slots = s.get("journal_slots", 512)
    k = settings["link"]
    u = machine.UART(k["uart"], baudrate=k.get("baud", 115200), tx=machine.Pin(k["tx"]),
                     rx=machine.Pin(k["rx"]), rxbuf=RXBUF)


def _panel():
    """Set the panel up; a fault if it does not answer."""
    global fault, _retry
    try:
        ssd1306.setup()
    except OSError:
        fault = 1
        _retry = time.ticks_add(time.ticks_ms(), 2000)


def make_id():
    return "EV-" + "".join("%02X" % b for b in machine.unique_id())


rx = bytearray(128)  # read() fills it: no allocation per read


def read():
    """Bytes waiting on the UART, read into `rx`: how many (0: none)."""
    global overruns
    n = u.any()
    if not n:
        return 0
    if n >= RXBUF:
        overruns += 1
    return u.readinto(rx) or 0


def write(data):
    u.write(data)


def wait(ms):
    # Buttons are sampled, not interrupt-driven: the loop comes back at
    # least every 5 ms (debounce is 30 ms), at once if the UART has bytes.
    if not u.any():
        time.sleep_ms(min(5, ms))


def scan(buttons, now):
    for i in range(5):
        buttons.set(i, 1 if pins[i].value() == (0 if low else 1) else 0, now)
    if src is not None and time.ticks_diff(time.ticks_ms(), _retry) >= 0:
        if fault:
            _put()  # the panel back? it gets its settings and the picture again
        else:
            _probe()


def _probe():
    global fault, _retry
    _retry = time.ticks_add(time.ticks_ms(), 2000)
    try:
        ssd1306.probe()
    except OSError:
        fault = 1


def _put():
    global fault, _retry
    try:
        if fault:
            ssd1306.setup()  # a panel back (or repowered) has forgotten its settings
        ssd1306.show(src)
        fault = 0
    except OSError:
        fault = 1
        _retry = time.ticks_add(time.ticks_ms(), 2000)


def show(buf, view, invitation=""):
    global src
    if src is None:
        src = FrameBuffer(buf, width, height, MONO_HLSB)
    _put()
    print("screen", view, invitation)
