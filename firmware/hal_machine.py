# The ESP32 and RP2040 boards of boards.toml (`hal = "hal_machine"`): five
# buttons on GPIO, an SSD1306/SSD1309 OLED on I2C (micropython-lib ssd1306),
# the gateway on a UART. The same module interface as hal_sim.py. Imported
# only on those boards: `machine` and `ssd1306` do not exist on the unix port.
#
# Settings come from board.json (the board's table of boards.toml, written
# by the flashing tool) next to main.py.

import time

import machine
import ssd1306
from framebuf import MONO_HLSB, FrameBuffer

name = "machine"


def init(settings, opts):
    global name, width, height, debounce_ms, stuck_ms, slots, flash, u, oled, src, pins, low
    name = settings.get("name", name)
    d = settings["display"]
    width = d["width"]
    height = d["height"]
    i2c = machine.I2C(d["i2c"], sda=machine.Pin(d["sda"]), scl=machine.Pin(d["scl"]))
    oled = ssd1306.SSD1306_I2C(width, height, i2c, addr=d.get("address", 0x3C))
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
                     rx=machine.Pin(k["rx"]), rxbuf=1024)


def make_id():
    return "EV-" + "".join("%02X" % b for b in machine.unique_id())


rx = bytearray(128)  # read() fills it: no allocation per read


def read():
    """Bytes waiting on the UART, read into `rx`: how many (0: none)."""
    return (u.readinto(rx) or 0) if u.any() else 0


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


def show(buf, view, invitation=""):
    # ssd1306 keeps its own MONO_VLSB frame; blit converts from ours.
    global src
    if src is None:
        src = FrameBuffer(buf, width, height, MONO_HLSB)
    oled.blit(src, 0, 0)
    oled.show()
