"""`hcp gateway`: run the hall gateway and talk to a running one.

    hcp gateway init hall.toml            write a commented config that runs as is
    hcp gateway check --config hall.toml  check a config, print what is wrong
    hcp gateway run --config hall.toml    the service (SIGTERM/SIGINT stop it)
    hcp gateway invite --config hall.toml --window A05 --case 330100-2026-000123
    hcp gateway status / devices / cancel  (over the HTTP API of the running gateway)

Errors print one message, no traceback, exit code 2 for a bad config or
request, 1 for a gateway that cannot be reached or refuses.
"""

import json
import logging
import os
import sys

import click

from gateway import config as config_mod
from gateway.client import Client, ClientError
from gateway.errors import ConfigError, GatewayError
from gateway.files import write_private

_config_option = click.option("--config", "-c", "config_path", required=True, metavar="PATH",
                              type=click.Path(dir_okay=False),
                              help="The gateway's TOML config (see `hcp gateway init`).")


def _load(path):
    try:
        return config_mod.load(path)
    except ConfigError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


def _api(cfg, method, path, body=None):
    """The running gateway's answer, or one line on stderr and exit 2 (a
    request it refused as wrong: 400, 404) or 1 (no answer, TLS, the rest)."""
    try:
        return Client.of_config(cfg).need(method, path, body)
    except ClientError as err:
        click.echo(str(err), err=True)
        sys.exit(2 if err.status in (400, 404) else 1)


def _print(obj):
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@click.group()
def gateway():
    """The hall gateway: serial and MQTT ingest, the durable outbox, invitations,
    device registry and pairing, forwarding upstream."""


@gateway.command()
@click.argument("path", default="hall.toml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path, force):
    """Write a commented config to PATH (default hall.toml).

    Every key there is (docs/config.md), set or commented out at its
    default, each with its unit and range. It runs as is: serial ports found
    by glob, a fresh random API token, no upstream until you add an
    [[upstream]] table. The file holds that token: it is written 0600 (only
    its owner reads it), over an existing one too."""
    if os.path.exists(path) and not force:
        click.echo("%s exists; use --force to overwrite" % path, err=True)
        sys.exit(2)
    # Made 0600 under a temporary name, then renamed over `path`: the token is
    # never readable by others, not even in an existing file's old mode.
    try:
        write_private(path, config_mod.example())
    except OSError as err:
        raise click.ClickException("cannot write %s: %s" % (path, err.strerror or err)) from err
    click.echo("wrote %s; start the gateway with: hcp gateway run --config %s" % (path, path))


@gateway.command()
@_config_option
def check(config_path):
    """Check a config file: print each wrong key and what is wrong, or OK."""
    cfg = _load(config_path)
    click.echo("OK: hall %s, database %s, %d serial pattern(s), %d upstream(s)"
               % (cfg.hall.id, cfg.db_path, len(cfg.serial.ports), len(cfg.upstreams)))


@gateway.command()
@_config_option
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Logging threshold.")
def run(config_path, log_level):
    """Run the gateway until SIGTERM or Ctrl-C."""
    cfg = _load(config_path)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.service import Gateway

    try:
        code = Gateway(cfg).run()
    except GatewayError as err:
        click.echo("gateway: %s" % err, err=True)
        sys.exit(1)
    except OSError as err:  # e.g. the HTTP port is taken
        click.echo("gateway: %s" % err, err=True)
        sys.exit(1)
    sys.exit(code)


@gateway.command()
@_config_option
@click.option("--window", "-w", required=True, help="Window whose evaluator asks for the rating.")
@click.option("--case", "-p", "cases", multiple=True, required=True, metavar="PROJECT_NO",
              help="Case number (projectNo); repeat for a batch (one rating, one record per case).")
@click.option("--service-number", default="", help="serviceNumber, applied to every case.")
@click.option("--task-code", default="", help="taskCode, applied to every case.")
@click.option("--timeout", "timeout_s", type=int, default=None,
              help="Seconds the invitation stays open (default: [device] invite_timeout_s).")
def invite(config_path, window, cases, service_number, task_code, timeout_s):
    """Open an invitation (一次一评) at a window for one or more cases."""
    cfg = _load(config_path)
    body = {"window": window, "cases": [
        {k: v for k, v in (("projectNo", c), ("serviceNumber", service_number), ("taskCode", task_code)) if v}
        for c in cases]}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    _print(_api(cfg, "POST", "/api/invitations", body))


@gateway.command()
@_config_option
@click.argument("invitation")
def cancel(config_path, invitation):
    """Withdraw an open invitation (no rating results)."""
    cfg = _load(config_path)
    _print(_api(cfg, "POST", "/api/invitations/%s/cancel" % invitation, {}))


@gateway.command()
@_config_option
def status(config_path):
    """Show the running gateway's status: storage alarm, ingest counters,
    rejected frames, ports, outbox and forwarders."""
    cfg = _load(config_path)
    _print(_api(cfg, "GET", "/api/status"))


@gateway.command()
@_config_option
@click.argument("device_id", required=False)
def devices(config_path, device_id):
    """List the devices the gateway knows, or show one in detail."""
    cfg = _load(config_path)
    if device_id:
        _print(_api(cfg, "GET", "/api/devices/%s" % device_id))
        return
    for d in _api(cfg, "GET", "/api/devices")["devices"]:
        click.echo("%-20s %-7s %-8s %-10s %-6s fw=%s journal=%s" % (
            d["device_id"], "online" if d["online"] else "offline",
            "paired" if d["paired"] else "unpaired", d["staff_id"] or "-", d["window"] or "-",
            d["fw"] or "?", d["journal_depth"]))


@gateway.command(name="broker-config")
@_config_option
@click.option("--out", "out_dir", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Directory for mosquitto.conf, passwd, acl, certificates, credentials (made 0700).")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="Host name or address devices and the gateway use for the broker, for its "
                   "certificate (repeat; default: this host's name, localhost, 127.0.0.1).")
@click.option("--port", default=8883, show_default=True, type=click.IntRange(1, 65535),
              help="The TLS listener's port.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address the listener binds.")
@click.option("--device", "devices", multiple=True, metavar="ID",
              help="A device user beside those the gateway's database holds a key for (repeat).")
@click.option("--reader", "readers", multiple=True, metavar="USER=FILTER",
              help="A user that may read FILTER, e.g. platform=hcp/records/# (repeat).")
def broker_config(config_path, out_dir, hosts, port, bind, devices, readers):
    """Write a Mosquitto config for the hall broker: a TLS listener, no
    anonymous clients, a user per device and for the gateway, and an ACL that
    lets each device publish only its own up topic and read only its own
    down topic, and only the gateway read them all. Running it again keeps
    the CA and every password (new devices get theirs).

    Example: hcp gateway broker-config -c hall.toml --out /etc/mosquitto/hcp --host gw.hall.local
    """
    from gateway import broker_config as bc

    cfg = _load(config_path)
    rd = {}
    for r in readers:
        user, sep, flt = r.partition("=")
        if not sep or not user or not flt:
            raise click.BadParameter("%r: give USER=FILTER" % r, param_hint="--reader")
        rd.setdefault(user, []).append(flt)
    try:
        got = bc.write(cfg, out_dir, hosts=hosts, port=port, bind=bind, devices=devices, readers=rd)
    except GatewayError as err:
        raise click.ClickException(str(err)) from err
    out = os.path.abspath(out_dir)
    click.echo("wrote %s (%d users: the gateway, %d devices, %d readers); certificate for %s"
               % (got["conf"], got["users"], len(got["devices"]), len(rd), ", ".join(got["hosts"])))
    click.echo("run it: mosquitto -c %s   (or include it from /etc/mosquitto/conf.d; the mosquitto user "
               "must read the files)" % got["conf"])
    click.echo("then in %s:\n[mqtt]\nhost = \"%s\"\nport = %d\nusername = \"%s\"\npassword_file = \"%s\"\n"
               "tls = { ca = \"%s\" }" % (config_path, got["hosts"][0], port, got["gateway_user"],
                                          os.path.join(out, "gateway.password"), os.path.join(out, "ca.crt")))


# -- the database, read-only, for a person (gateway/store/dbview.py) ------------------
@gateway.group()
def db():
    """The gateway's database, read-only (a running gateway is not held up):
    its tables, their rows, an export. Device keys, the upstream records and
    the invitations' cases are never shown."""


def _db_view(config_path):
    from gateway.store import dbview

    try:
        return dbview, dbview.open_ro(_load(config_path).db_path)
    except dbview.DbViewError as err:
        raise click.ClickException(str(err)) from err


@db.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def tables(config_path, as_json):
    """Every table with its rows and columns, and the migrations applied and pending."""
    dbview, conn = _db_view(config_path)
    got = {"tables": dbview.tables(conn), "migrations": dbview.migrations(conn)}
    if as_json:
        _print(got)
        return
    for t in got["tables"]:
        click.echo("%-12s %10d rows  %s" % (t["table"], t["rows"], ", ".join(t["columns"])))
    m = got["migrations"]
    click.echo("migrations: %d applied (last %s), %d pending%s"
               % (len(m["applied"]), m["applied"][-1]["name"] if m["applied"] else "-", len(m["pending"]),
                  ": " + ", ".join(m["pending"]) if m["pending"] else ""))


@db.command()
@_config_option
@click.argument("table")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Rows at most.")
@click.option("--newest", is_flag=True, help="The newest rows first.")
def rows(config_path, table, limit, newest):
    """The rows of TABLE as JSON lines (secrets withheld), oldest first."""
    dbview, conn = _db_view(config_path)
    try:
        for row in dbview.rows(conn, table, limit=limit, newest=newest):
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
    except dbview.DbViewError as err:
        raise click.ClickException(str(err)) from err


@db.command()
@_config_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the files.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def export(config_path, out_dir, fmt):
    """Every table into OUT as TABLE.csv or TABLE.json (secrets withheld)."""
    dbview, conn = _db_view(config_path)
    counts = dbview.export(conn, out_dir, fmt)
    click.echo("wrote %d tables (%d rows) to %s" % (len(counts), sum(counts.values()), out_dir))
