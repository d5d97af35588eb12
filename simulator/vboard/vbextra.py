# The rest of the virtual board's `machine` (simulator/vboard/machine.py
# loads it on first use of a name it does not have): what the firmware
# does not touch, kept out of the VM's heap until someone asks.

import struct
import time

import machine
from machine import I2C as SoftI2C  # noqa: F401  (the bit-banged bus: the same wires here)

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_esp32 = machine._board == "esp32"
_freq = [int(machine._wire.get("freq") or (160000000 if _esp32 else 125000000))]


def reset_cause():
    return PWRON_RESET


def soft_reset():
    machine.reset()  # the unix port has no soft reset: the simulator restarts the VM


def freq(hz=None):
    if hz is None:
        return _freq[0]
    if _esp32 and hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq[0] = hz


def idle():
    time.sleep_ms(1)


def lightsleep(ms=0):
    time.sleep_ms(ms)


def deepsleep(ms=0):
    time.sleep_ms(ms)
    machine.reset()  # waking from deep sleep is a boot


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class WDT:
    """Started, it cannot be stopped: the simulator resets the board when
    it is not fed within `timeout` ms (the RP2040's counter stops at 8388)."""

    def __init__(self, id=0, timeout=5000):
        if not _esp32 and timeout > 8388:
            raise ValueError("timeout exceeds 8388 ms")
        self._fed = time.ticks_ms()
        self._every = max(timeout // 4, 1)
        machine._hw.write(b"W" + struct.pack("<I", timeout))

    def feed(self):
        t = time.ticks_ms()
        if time.ticks_diff(t, self._fed) >= self._every:  # the simulator needs it now and then
            self._fed = t
            machine._hw.write(b"F")


class RTC:
    _off = 0  # seconds from the host's clock

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:  # the ports' order: weekday before the hour, subseconds last
            t = time.localtime(time.time() + RTC._off)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        RTC._off = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0)) - time.time()

    def init(self, dt):
        self.datetime(dt)
