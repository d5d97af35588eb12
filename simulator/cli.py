"""`hcp sim`: simulated halls of real-firmware evaluators; `hcp demo`.

Both run until done or stopped: Ctrl-C, SIGTERM or SIGHUP stop every process
they started (`procs.stop_on_signals`), within seconds."""

import json
import sys

import click

from simulator import fleet as _fleet
from simulator import procs
from simulator.hall import DEFAULT_HEAP, HallError
from tools.flash import FlashError


def _faults(ctx, param, value):
    kinds = [k.strip() for k in (value or "").split(",") if k.strip()]
    unknown = [k for k in kinds if k not in _fleet.FAULTS]
    if unknown:
        raise click.BadParameter("unknown fault(s) %s; choose from %s" % (", ".join(unknown), ",".join(_fleet.FAULTS)))
    return kinds


@click.group()
def sim():
    """Simulated halls: real firmware on the MicroPython VM, a real gateway,
    broker and upstream, scripted citizens and clerks, and faults."""


@sim.command()
@click.option("--devices", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="Evaluators (one window each); at most 2,000 without --fast.")
@click.option("--ratings", default=200, show_default=True, type=click.IntRange(0), help="Invitations the clerks open in all.")
@click.option("--seed", default=1, show_default=True, help="Seed of every random choice (citizens, faults, noise).")
@click.option("--faults", default="", callback=_faults, metavar="LIST",
              help="Comma-separated: " + ",".join(_fleet.FAULTS) + ".")
@click.option("--noise-rate", default=0.002, show_default=True, type=click.FloatRange(0, 0.2),
              help="line-noise: chance per byte of a flip, drop or duplicate.")
@click.option("--broker", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto", show_default=True,
              help="Mosquitto when installed, else the embedded amqtt broker.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep logs, flash dirs and databases here.")
@click.option("--max-seconds", default=900, show_default=True, help="Stop the actors after this long.")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True,
              help="MicroPython heap of every device (-X heapsize): the firmware's budget.")
@click.option("--fast", is_flag=True,
              help="In-process evaluators for very large fleets: the firmware's logic modules (rating, journal, "
                   "buttons, orders) under CPython over the gateway's MQTT ingest, not the MicroPython VM. "
                   "Same gateway, broker, upstream, faults (no line-noise) and invariants.")
@click.option("--board", type=click.Choice(["sim", "esp32", "pico"]), default="sim", show_default=True,
              help="The evaluators' board: sim (hal_sim), or virtual ESP32 / RP2040 boards running the bundle "
                   "`hcp tool flash --board esp32|pico` builds (hal_machine.py and the panel driver, on emulated "
                   "GPIO, UART and an SSD1306/SSD1309 on I2C: simulator/board.py).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (progress goes to stderr).")
def fleet(devices, ratings, seed, faults, noise_rate, broker, workdir, max_seconds, heap, fast, board, as_json):
    """Run a hall of DEVICES evaluators through RATINGS invitations with FAULTS,
    then check the invariants of docs/design.md §6. Exit status 1 if any breaks."""
    if not fast and devices > 2000:
        raise click.BadParameter("at most 2000 real-firmware devices; --fast for more", param_hint="--devices")
    if fast and "line-noise" in faults:
        raise click.BadParameter("line-noise does not apply to --fast (its devices have no serial line)",
                                 param_hint="--faults")
    if fast and board != "sim":
        raise click.BadParameter("--fast devices run on a CPython board of their own: no --board",
                                 param_hint="--board")

    def progress(msg):
        click.echo("[sim] " + msg, err=True)

    try:
        with procs.stop_on_signals():
            report = _fleet.run(devices=devices, ratings=ratings, seed=seed, faults=faults,
                                noise_rate=noise_rate, workdir=workdir, progress=progress, broker=broker,
                                max_s=max_seconds, heap=heap, fast=fast, board=board)
    except KeyboardInterrupt as stopped:
        click.echo("interrupted (%s)" % procs.signal_name(stopped), err=True)
        sys.exit(128 + getattr(stopped, "signum", 2))
    except (HallError, FlashError) as err:  # the hall could not start: one line, no traceback
        raise click.ClickException("the hall did not start: %s" % err) from err
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    sys.exit(0 if report["ok"] else 1)


@sim.command()
@click.option("--board", type=click.Choice(["esp32", "pico", "sim"]), default="esp32", show_default=True,
              help="A virtual ESP32 or RP2040 board (simulator/board.py), or the sim board.")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="The device's flash, flashed with `hcp tool flash --board B --dir D`.")
@click.option("--tty", metavar="PATH",
              help="A symlink to the gateway's end of the device's serial line (for a gateway's [serial] ports).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="The firmware's heap (-X heapsize).")
def device(board, directory, tty, heap):
    """One evaluator by itself: the board whose flash is DIR runs until
    stopped (Ctrl-C, SIGTERM), its serial line on a pty for a gateway, a
    virtual board's USB REPL on another (mpremote, hcp tool flash/provision
    --port). Buttons, the panel and power from stdin (see the list it prints)."""
    from simulator import board as _board

    try:
        with procs.stop_on_signals():
            _board.run_standalone(board, directory, tty=tty, heap=heap, say=click.echo, lines=sys.stdin)
    except KeyboardInterrupt as stopped:
        click.echo("stopped (%s)" % procs.signal_name(stopped), err=True)
    except _board.BoardError as err:
        raise click.ClickException(str(err)) from err


@click.command()
@click.option("--seconds", type=click.IntRange(1), help="Stop by itself after this many seconds (default: run until Ctrl-C).")
@click.option("--devices", default=4, show_default=True, type=click.IntRange(1, 32), help="Evaluators in the demo hall.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where the demo keeps its files (default var/demo-<time>).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="MicroPython heap of every evaluator (-X heapsize).")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port of the dashboard and API (default: 8780, or any free port when 8780 is taken).")
def demo(seconds, devices, workdir, heap, port):
    """The whole system out of the box: an embedded MQTT broker, the hall
    gateway, and simulated evaluators (the real firmware) rated at a human pace."""
    from simulator import demo as _demo

    try:
        with procs.stop_on_signals():
            _demo.run(seconds=seconds, devices=devices, workdir=workdir, say=click.echo, heap=heap, port=port)
    except KeyboardInterrupt:  # a stop signal before the demo could say so itself
        pass
    except _demo.DemoError as err:  # one line, not a traceback
        click.echo("hcp demo: %s" % err, err=True)
        sys.exit(1)
