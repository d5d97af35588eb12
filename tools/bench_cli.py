"""`hcp bench NAME`: run one benchmark of docs/design.md §5 and print its figures."""

import importlib
import json

import click

# name -> (module, one-line description)
BENCHES = {
    "ingest": ("bench.ingest", "100 pty devices streaming events: committed + ACKed events/s vs raw sqlite3 batched inserts"),
    "ack-latency": ("bench.ack_latency", "press -> ACK p50/p99 at 100 devices x 10 events/s vs a bare pty round trip"),
    "forward": ("bench.forward", "outbox rows to Mosquitto, QoS 1 until PUBACK and marked, vs a bare paho publish loop"),
    "drain": ("bench.drain", "seconds to deliver a large buffered backlog after an outage"),
    "fleet": ("bench.fleet", "largest fleet of real-firmware devices with zero loss in 60 s"),
    "firmware": ("bench.firmware", "firmware peak heap at -X heapsize=64K, boot-to-ready, bundle size"),
    "flood": ("bench.flood", "60 s of garbage and fake hellos on the broker: a real device's ACK p99, gateway RSS, devices registered"),
    "peer": ("bench.peer", "time to durable and duplicates: ours vs ThingsBoard IoT Gateway's SQLite storage"),
}


class BenchGroup(click.Group):
    def list_commands(self, ctx):
        return list(BENCHES)

    def get_command(self, ctx, name):
        if name not in BENCHES:
            return None
        module, text = BENCHES[name]

        @click.command(name=name, help=text + ".")
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the default prints it indented).")
        @click.option("--param", "-p", multiple=True, metavar="KEY=VALUE",
                      help="Override a parameter of the benchmark (repeatable).")
        def cmd(as_json, param):
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as err:
                raise click.ClickException("benchmark %s is not available: %s" % (name, err)) from err
            params = {}
            for item in param:
                key, sep, value = item.partition("=")
                if not sep:
                    raise click.BadParameter("expected KEY=VALUE, got %r" % item, param_hint="--param")
                params[key.replace("-", "_")] = _value(value)
            try:
                res = mod.run(progress=None if as_json else lambda msg: click.echo(msg, err=True), **params)
            except TypeError as err:
                raise click.ClickException("bad parameter for %s: %s" % (name, err)) from err
            click.echo(json.dumps(res, ensure_ascii=False) if as_json else json.dumps(res, ensure_ascii=False, indent=1))

        return cmd


def _value(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


@click.group(cls=BenchGroup)
def bench():
    """Benchmarks against the figures of docs/design.md §5, each beside a reference
    measured in the same run (docs/benchmarks.md has the recorded figures)."""
