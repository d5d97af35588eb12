"""`hcp demo`: the whole system at work, out of the box.

An embedded MQTT broker (amqtt), the hall gateway, a handful of evaluators
running the real firmware on the MicroPython VM, citizens and clerks at a
human pace, and an upstream platform stand-in that records what arrives.
It prints where to look, a line of figures every few seconds, and stops
cleanly on Ctrl-C or SIGTERM (or by itself after --seconds): `hcp demo` runs
under `procs.stop_on_signals()`, and the hall's stop is shielded from a
second signal (simulator/procs.py)."""

import datetime
import pathlib
import random
import threading
import time

from simulator import procs, upstream
from simulator.fleet import Actor
from simulator.hall import SimHall


class DemoError(RuntimeError):
    """The demo could not run (its message is one line: what and why)."""


def _port_or_any(port):
    """The well-known dashboard port when it is free, else any free one."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return None


def run(seconds=None, devices=4, workdir=None, say=print, seed=None, heap=None, port=None):
    """Run the demo hall until `seconds` have passed or Ctrl-C / SIGTERM.
    port: the dashboard's; None is 8780 when free, else any free port.
    A hall that cannot start raises DemoError, everything it had started
    stopped again."""
    if workdir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        workdir = pathlib.Path("var") / ("demo-" + stamp)
    workdir = pathlib.Path(workdir).resolve()
    seed = seed if seed is not None else int(time.time())
    hall = SimHall(workdir, devices=devices, seed=seed, broker="amqtt", invite_timeout_s=15, heartbeat_s=5,
                   http_port=port or _port_or_any(8780), heap=heap)
    stop = threading.Event()
    try:
        say("starting a hall of %d evaluators in %s ..." % (devices, workdir))
        try:
            hall.start(progress=lambda m: say("  " + m))
        except (RuntimeError, OSError) as err:  # HallError, procs.ProcessError, FlashError, a port...
            raise DemoError("the hall did not start: %s" % procs.one_line(err)) from err
        hall.reason_codes = [c for c, _ in hall.reasons()]
        say("")
        say("The hall is running. Where to look:")
        say("  dashboard       http://127.0.0.1:%d/   (token: %s)" % (hall.http_port, hall.token))
        say("  gateway API     http://127.0.0.1:%d/api/status  (header Authorization: Bearer <token>)"
            % hall.http_port)
        say("  metrics         http://127.0.0.1:%d/metrics" % hall.http_port)
        say("  database        %s" % (workdir / "gateway.db"))
        say("  upstream got    python -m simulator.upstream summary --db %s" % hall.receivers["http"].db)
        say("  a device screen %s" % (hall.windows[0].device.flash / "screen.pbm"))
        say("  MQTT broker     amqtt on 127.0.0.1:%d (records on hcp/records/#)" % hall.broker.port)
        say("  monthly report  hcp report monthly --db %s --month %s"
            % (workdir / "gateway.db", datetime.date.today().strftime("%Y-%m")))
        say("Citizens are rating at a human pace%s. Ctrl-C stops." %
            (" for %d s" % seconds if seconds else ""))
        rng = random.Random(seed)
        ledger, counts = [], {"lock": threading.Lock()}
        actors = [Actor(hall, w, 10 ** 9, random.Random(rng.random()), ledger, counts, stop, pause=(2.0, 6.0))
                  for w in hall.windows]
        for a in actors:
            a.start()
        t0 = time.monotonic()
        next_line = t0 + 5
        while seconds is None or time.monotonic() - t0 < seconds:
            time.sleep(0.2)
            if time.monotonic() >= next_line:
                next_line += 5
                s = upstream.summary(hall.receivers["http"].db)
                say("[%3.0f s] invitations %d, thanked %d, uninvited presses %d, upstream records %d (unique %d)"
                    % (time.monotonic() - t0, len(ledger), sum(1 for a in ledger if a.thanked),
                       counts.get("uninvited", 0), s.get("received", 0), s.get("unique", 0)))
    except KeyboardInterrupt as stopped:
        say("\nstopping (%s) ..." % procs.signal_name(stopped))
    finally:
        stop.set()
        with procs.shielded():  # a second Ctrl-C must not leave half the hall running
            hall.stop()
    say("stopped. Everything the demo wrote is in %s" % workdir)
    return workdir
