"""`hcp sim`: simulated halls of real-firmware evaluators."""

import json
import sys

import click

from simulator import fleet as _fleet
from simulator.hall import DEFAULT_HEAP


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
@click.option("--devices", default=20, show_default=True, type=click.IntRange(1, 2000), help="Evaluators (one window each).")
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (progress goes to stderr).")
def fleet(devices, ratings, seed, faults, noise_rate, broker, workdir, max_seconds, heap, as_json):
    """Run a hall of DEVICES evaluators through RATINGS invitations with FAULTS,
    then check the invariants of DESIGN.md §6. Exit status 1 if any breaks."""
    def progress(msg):
        click.echo("[sim] " + msg, err=True)

    try:
        report = _fleet.run(devices=devices, ratings=ratings, seed=seed, faults=faults, noise_rate=noise_rate,
                            workdir=workdir, progress=progress, broker=broker, max_s=max_seconds,
                            heap=heap)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    sys.exit(0 if report["ok"] else 1)


@click.command()
@click.option("--seconds", type=click.IntRange(1), help="Stop by itself after this many seconds (default: run until Ctrl-C).")
@click.option("--devices", default=4, show_default=True, type=click.IntRange(1, 32), help="Evaluators in the demo hall.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where the demo keeps its files (default var/demo-<time>).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="MicroPython heap of every evaluator (-X heapsize).")
def demo(seconds, devices, workdir, heap):
    """The whole system out of the box: an embedded MQTT broker, the hall
    gateway, and simulated evaluators (the real firmware) rated at a human pace."""
    from simulator import demo as _demo

    _demo.run(seconds=seconds, devices=devices, workdir=workdir, say=click.echo, heap=heap)
