"""`hcp tool`: what a technician runs in the hall — flash a board, pair it
with one staff account, and see what the citizen will see."""

import json
import os
import pathlib

import click

from gateway import config as gwconfig
from gateway import settings as gwsettings
from gateway.client import Client, ClientError
from gateway.errors import ConfigError
from tools import flash as _flash
from tools import pair as _pair


def _progress(msg):
    click.echo("  " + msg, err=True)


@click.group()
def tool():
    """Flash boards, pair devices with staff accounts (一码一账号), inspect devices."""


# -- flash ---------------------------------------------------------------------
@tool.command()
@click.option("--board", required=True, help="Board name from boards.toml (sim, esp32, pico, ...).")
@click.option("--port", help="Serial port of a real board (mpremote), e.g. /dev/ttyACM0.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Flash directory of a sim device, or of a virtual board (hcp sim device --board esp32).")
def flash(board, port, directory):
    """Compile protocol/ and firmware/ with mpy-cross and install them with the
    board's settings; verify every file by SHA-256. The device's identity,
    key, binding, boot counter and journal are kept."""
    if bool(port) == bool(directory):
        raise click.UsageError("give exactly one of --port (a real board) or --dir (a sim device)")
    click.echo("flashing board %s to %s" % (board, port or directory), err=True)
    try:
        files = (_flash.flash_port(board, port, _progress) if port
                 else _flash.flash_dir(board, directory, _progress))
    except _flash.FlashError as err:
        raise click.ClickException(str(err)) from err
    click.echo("done: %d files, %d bytes" % (len(files), _size(files, directory)))


def _size(files, directory):
    if not directory:
        return 0
    return sum(os.path.getsize(os.path.join(directory, f)) for f in files)


# -- talking to the gateway ------------------------------------------------------
HINTS = {"ca": "--cacert or $HCP_CACERT", "api": "use --config or --api", "token": "use --config or --token"}


class _Gateway:
    def __init__(self, config, api, token):
        # The gateway's own config, read and checked as the gateway reads it
        # (gateway.config); none: the defaults, --api/--token or $HCP_API/$HCP_TOKEN.
        self.cfg = None
        if config and os.path.exists(config):
            try:
                self.cfg = gwconfig.load(config)
            except ConfigError as err:
                raise click.ClickException(str(err)) from err
        elif config and config != "hall.toml":
            raise click.ClickException("no config file at %s" % config)
        base = api or os.environ.get("HCP_API")
        token = token or os.environ.get("HCP_TOKEN")
        # The CA to check an https gateway with: --cacert, $HCP_CACERT, else
        # the gateway's own certificate from its config (pinned), else the system's.
        ctx = click.get_current_context(silent=True)
        cacert = (ctx.meta.get("hcp.cacert") if ctx else None) or os.environ.get("HCP_CACERT")
        try:
            if self.cfg is not None and not base:  # the gateway of this config, from its own machine
                self.api = Client.of_config(self.cfg, hints=HINTS, **({"cafile": cacert} if cacert else {}))
                self.api.token = token or self.cfg.token
            else:
                if not base:  # the default [http] listen, on this machine
                    base = "http://%s:%d" % gwsettings.split_listen(gwsettings.default("http", "listen"))
                self.api = Client(base, token or "", cafile=cacert, hints=HINTS)
        except ClientError as err:
            raise click.ClickException(str(err)) from err
        self.base, self.token = self.api.base, self.api.token

    def call(self, method, path, body=None):
        return self.api.call(method, path, body)

    def need(self, method, path, body=None):
        try:
            return self.api.need(method, path, body)
        except ClientError as err:
            raise click.ClickException(str(err)) from err

    def device_on_port(self, port):
        got = self.need("GET", "/api/devices")
        real = os.path.realpath(port)

        def on_port(d):
            link = (d.get("link") or "").split(":", 1)[-1]  # "serial:/dev/ttyUSB0"
            return link and (link == port or os.path.realpath(link) == real)

        for d in got["devices"]:
            if on_port(d):
                return d["device_id"]
        for d in got.get("unprovisioned") or ():
            if on_port(d):
                raise click.ClickException("device %s on %s has no key yet: provision it over its USB cable "
                                           "first (hcp tool provision)" % (d["device_id"], port))
        raise click.ClickException("no device has said hello on %s; is it connected and flashed?" % port)

    def reasons(self):
        """[(code, label)]: the config's [device] reasons, or the schema's default."""
        return list((self.cfg.device if self.cfg else gwconfig.Device()).reasons)

    def url_template(self):
        """The config's [pairing] url_template, or the schema's default."""
        return (self.cfg.pairing if self.cfg else gwconfig.Pairing()).url_template


def _cacert(ctx, param, value):
    if value:
        ctx.meta["hcp.cacert"] = value  # for _Gateway; the commands' signatures stay as they are


def _gateway_options(f):
    f = click.option("--cacert", metavar="PEM", expose_value=False, callback=_cacert,
                     type=click.Path(dir_okay=False),
                     help="CA certificate(s) to check an https:// gateway with (default: $HCP_CACERT; "
                          "with --config, the gateway's own tls_cert).")(f)
    f = click.option("--token", help="API token (default: from the config, or $HCP_TOKEN).")(f)
    f = click.option("--api", help="Gateway API base URL (default: from the config, or $HCP_API).")(f)
    f = click.option("--config", default="hall.toml", show_default=True, type=click.Path(dir_okay=False),
                     help="The gateway's config: API address, token, URL template, 差评 reasons.")(f)
    return f


# -- provision -------------------------------------------------------------------
@tool.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Flash directory of a sim device.")
@click.option("--port", help="USB serial port of a real board (mpremote), e.g. /dev/ttyACM0.")
@click.option("--board", help="Board name from boards.toml (with --port: where its flash is).")
@click.option("--device", "device_id", help="Device id for a sim device that never booted (default: a new one).")
@_gateway_options
def provision(directory, port, board, device_id, config, api, token):
    """Give a device its key, over its USB cable: the gateway makes a new key
    and registers it, and this tool writes it into the device. The key never
    crosses the hall network in clear: the tool asks only a gateway on this
    machine or over https. A device provisioned again keeps its binding; the
    gateway takes its old key until it first uses the new one (restart it).

    Example: hcp tool provision --port /dev/ttyACM0 --board esp32 --config hall.toml
    """
    from tools import provision as _prov

    if bool(port) == bool(directory):
        raise click.UsageError("give exactly one of --port (a real board) or --dir (a sim device)")
    gw = _Gateway(config, api, token)
    try:
        if directory:
            did, again = _prov.provision_dir(gw.api, directory, device_id)
        else:
            if not board:
                raise click.UsageError("--port needs --board (where the board keeps its files)")
            root = _flash.board_settings(board).get("storage", {}).get("dir", "/")
            did, again = _prov.provision_port(gw.api, port, root)
    except (_prov.ProvisionError, _flash.FlashError) as err:
        raise click.ClickException(str(err)) from err
    click.echo("provisioned %s%s; %s, then pair it (hcp tool pair --device %s)"
               % (did, " again (its old key works until it uses the new one)" if again else "",
                  "restart the device to use its key" if directory else "the board restarted with its key", did))


# -- pair / unpair -----------------------------------------------------------------
@tool.command()
@click.option("--staff", "staff_id", required=True, help="Staff account id (工号).")
@click.option("--name", "staff_name", required=True, help="Staff name as shown on the card (e.g. 王小明).")
@click.option("--window", required=True, help="Window id (e.g. A05).")
@click.option("--device", "device_id", help="Device id, as `hcp tool list` shows it.")
@click.option("--port", help="The gateway's serial port the device is on (instead of --device).")
@click.option("--replace", is_flag=True, help="Move an existing binding of this staff account, window or "
                                              "device (audited). Without it such a pairing is refused.")
@click.option("--url-template", help="Evaluation URL, with {staff_id} (default: [pairing] url_template of "
                                     "the config). Upper-case alphanumeric URLs make the smallest QR codes.")
@_gateway_options
def pair(staff_id, staff_name, window, device_id, port, replace, url_template, config, api, token):
    """Bind a provisioned device to one staff account at a window: draws the staff card (name, 工号, window, QR code of the staff's
    evaluation URL) and sends it. One code, one account: a staff account or
    device bound elsewhere is refused, with the current binding shown."""
    if bool(device_id) == bool(port):
        raise click.UsageError("give exactly one of --device or --port")
    gw = _Gateway(config, api, token)
    if port:
        device_id = gw.device_on_port(port)
    dev = gw.need("GET", "/api/devices/%s" % device_id)
    display = _display(dev.get("board") or "sim")
    try:
        res = _pair.pair(gw.api, device_id, staff_id, staff_name, window, display,
                         url_template=url_template or gw.url_template(), reasons=gw.reasons(), replace=replace)
    except _pair.PairError as err:
        raise click.ClickException(str(err)) from err
    click.echo("paired %s with %s (%s) at window %s; QR code: %s"
               % (device_id, staff_id, staff_name, window, res["url"]))


def _display(board):
    try:
        return _flash.board_settings(board)["display"]
    except _flash.FlashError as err:
        raise click.ClickException("%s (the device reports board %r)" % (err, board)) from err


@tool.command()
@click.option("--device", "device_id", required=True, help="Device id.")
@_gateway_options
def unpair(device_id, config, api, token):
    """Undo a pairing: the device shows "not paired" (audited)."""
    gw = _Gateway(config, api, token)
    gw.need("POST", "/api/unpair", {"device_id": device_id})
    click.echo("unpaired %s" % device_id)


# -- show / list -----------------------------------------------------------------
@tool.command()
@click.option("--device", "device_id", required=True, help="Device id.")
@click.option("--png", type=click.Path(dir_okay=False), help="Write a PNG of what the screen shows.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Flash directory of a sim device: the PNG is its real framebuffer.")
@_gateway_options
def show(device_id, png, directory, config, api, token):
    """Device facts (board, firmware, binding, health, journal depth) and,
    with --png, a picture of its screen."""
    gw = _Gateway(config, api, token)
    dev = gw.need("GET", "/api/devices/%s" % device_id)
    for key in ("device_id", "online", "board", "fw", "boot", "staff_id", "window", "reported_staff",
                "journal_depth", "journal_free", "stuck_buttons", "clock_offset_s", "counters", "last_seen"):
        click.echo("%-15s %s" % (key, dev.get(key)))
    if png:
        img = _screen(gw, device_id, directory)
        img.convert("L").resize((img.width * 4, img.height * 4), 0).save(png)
        click.echo("screen: %s" % png)


def _screen(gw, device_id, directory):
    from PIL import Image

    if directory:
        path = pathlib.Path(directory) / "screen.pbm"
        if not path.exists():
            raise click.ClickException("%s has no screen.pbm: is the sim device running?" % directory)
        with Image.open(path) as img:
            img.load()
            return img.copy()
    status, res = gw.call("GET", "/api/devices/%s/bitmaps/0" % device_id)
    if status != 200:
        raise click.ClickException("no card stored for %s (pair it first)" % device_id)
    import base64

    from tools import card

    # The card as sent: lit pixels white, as the panel shows them.
    return card.from_mono_hlsb(res["width"], res["height"], base64.b64decode(res["data"]))


@tool.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@_gateway_options
def list_(as_json, config, api, token):
    """All devices the gateway knows, with binding and status."""
    gw = _Gateway(config, api, token)
    got = gw.need("GET", "/api/devices")
    devs = got["devices"]
    if as_json:
        click.echo(json.dumps(devs, ensure_ascii=False))
        return
    rows = [("DEVICE", "ONLINE", "STAFF", "WINDOW", "BOARD", "FW", "JOURNAL", "STUCK")]
    for d in devs:
        rows.append((d["device_id"], "yes" if d.get("online") else "NO", d.get("staff_id") or "-",
                     d.get("window") or "-", d.get("board") or "-", d.get("fw") or "-",
                     str(d.get("journal_depth") if d.get("journal_depth") is not None else "-"),
                     ",".join("%d★" % s for s in d.get("stuck_buttons") or []) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for d in got.get("unprovisioned") or ():
        click.echo("not provisioned: %s on %s (board %s, fw %s): hcp tool provision"
                   % (d["device_id"], d.get("link") or "?", d.get("board") or "-", d.get("fw") or "-"))
