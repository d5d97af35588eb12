"""The virtual boards' `machine` (simulator/vboard/) as code on the board
sees it, through the board's REPL over its USB pty (mpremote): the ports'
answers where the firmware or a tool can tell — unique_id's length, freq,
RTC, I2C scan and the errno of a NAK (ENODEV on the ESP32, EIO on the
RP2040) or of a bus held low (ETIMEDOUT), UART reads (None when nothing is
there), a pin's pull — and a watchdog that is not fed resets the board."""

import json
import subprocess
import time

import pytest

from simulator.board import VirtualBoard
from tools.flash import _tool

PROBE = r"""
import errno, json, machine
out = {"uid": len(machine.unique_id()), "freq": machine.freq()}
r = machine.RTC()
r.datetime((2026, 12, 2, 2, 10, 30, 0, 0))
out["rtc"] = list(r.datetime()[:3]) + [r.datetime()[4]]
i2c = machine.I2C(0, sda=machine.Pin(4), scl=machine.Pin(5))
out["scan"] = i2c.scan()
out["ack"] = i2c.writeto(0x3C, b"\x00\xaf")
try:
    i2c.writeto(0x3D, b"\x00\xaf")
except OSError as e:
    out["nak"] = errno.errorcode[e.errno]
u = machine.UART(UART_ID, baudrate=115200, rxbuf=64)
out["uart"] = [u.any(), u.read(), u.readinto(bytearray(4))]
out["pin"] = [machine.Pin(10, machine.Pin.IN, machine.Pin.PULL_UP).value(),
              machine.Pin(11, machine.Pin.IN, machine.Pin.PULL_DOWN).value()]
print(json.dumps(out))
"""


def _exec(port, code):
    out = subprocess.run([_tool("mpremote"), "connect", port, "exec", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("kind, uid, nak, freq", [("esp32", 6, "ENODEV", 160000000),
                                                   ("pico", 8, "EIO", 125000000)])
def test_machine_as_the_ports_answer(tmp_path, kind, uid, nak, freq):
    import os
    import tty

    m, s = os.openpty()  # the UART's far end: nobody talks
    tty.setraw(s)
    b = VirtualBoard(tmp_path, board=kind, uart=os.ttyname(s), seed=4, run_main=False)
    try:
        b.start()
        uart_id = b.settings["link"]["uart"]
        got = json.loads(_exec(b.usb_path, PROBE.replace("UART_ID", str(uart_id))).strip().splitlines()[-1])
        assert got == {"uid": uid, "freq": freq, "rtc": [2026, 12, 2, 10], "scan": [0x3C], "ack": 2,
                       "nak": nak, "uart": [0, None, None], "pin": [1, 0]}
        assert b.panel.on  # the 0xAF the probe sent reached the panel
        b.set_panel("stuck")
        out = _exec(b.usb_path, "import errno, machine\ntry:\n machine.I2C(0).writeto(0x3C, b'\\x00')\n"
                                "except OSError as e:\n print(errno.errorcode[e.errno])")
        assert out.strip() == "ETIMEDOUT"
        b.set_panel("missing")
        assert _exec(b.usb_path, "import machine\nprint(machine.I2C(0).scan())").strip() == "[]"
    finally:
        b.close()
        os.close(m)
        os.close(s)


def test_a_watchdog_not_fed_resets_the_board(tmp_path):
    b = VirtualBoard(tmp_path, board="pico", seed=5, run_main=False)
    try:
        b.start()
        starts = b.starts
        with pytest.raises(subprocess.CalledProcessError):  # 9 s is past the RP2040's counter
            subprocess.run([_tool("mpremote"), "connect", b.usb_path, "exec",
                            "import machine\nmachine.WDT(timeout=9000)"], check=True, capture_output=True,
                           timeout=30)
        _exec(b.usb_path, "import machine\nw = machine.WDT(timeout=300)\nw.feed()")
        deadline = time.monotonic() + 5
        while b.wdt_resets == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.wdt_resets == 1 and b.starts > starts
    finally:
        b.close()
