"""The hall gateway's configuration: one TOML file, checked in full at start.

`load(path)` returns a `Config` or raises `ConfigError` whose message has one
line per problem, each naming the key (`http.listen: ...`). Unknown keys are
errors too: a typo must not silently fall back to a default.

Every key, its type, range, default, unit and doc are declared once, in
gateway/settings.py: the checks, the defaults, the section classes below
(`Hall`, `Serial`, `MqttIngest`, `Device`, `Alerts`, `Pairing`, made from
those tables), the commented file of `example()` (`hcp gateway init`) and
docs/config.md all come from there. This module puts the checked values
together as the `Config` the gateway runs on. The `[[upstream]]` tables
belong to the forwarders: `Upstream.settings` holds the keys given (checked
by the same schema); each forwarder fills in its defaults from the schema
(settings.upstream_settings).
"""

import copy
import dataclasses
import ipaddress
import logging
import os
import secrets
import stat
import tomllib

from gateway import settings as schema
from gateway.errors import ConfigError
from gateway.settings import (  # noqa: F401 - the names other modules import from here
    FALLBACK_REASONS,
    FALLBACK_REASONS_VERSION,
    MAX_SIZE_MB,
    UPSTREAM_KINDS,
    http_tls_context,
    split_listen,
)


def _section(cls_name, table_name, doc):
    """A dataclass of one table's keys (required ones first), its defaults
    the schema's; secrets are left out of its repr. A `password_file` is no
    field: it is read into `password`."""
    table = schema.table(table_name)
    required, optional = [], []
    for key in table.keys:
        if key.reads:
            continue
        if key.required:
            required.append((key.name, object, dataclasses.field(repr=not key.secret)))
        elif isinstance(key.default, (list, dict)):
            optional.append((key.name, object, dataclasses.field(
                default_factory=lambda d=key.default: copy.deepcopy(d), repr=not key.secret)))
        else:
            optional.append((key.name, object, dataclasses.field(default=key.default, repr=not key.secret)))
    cls = dataclasses.make_dataclass(cls_name, required + optional, namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


Hall = _section("Hall", "hall", "[hall]: this hall's id and codes (the records carry them).")
Serial = _section("Serial", "serial", "[serial]: ports (explicit paths and globs) and line settings.")
MqttIngest = _section("MqttIngest", "mqtt", "[mqtt]: the hall broker of the Wi-Fi evaluators.")
Device = _section("Device", "device", "[device]: what the gateway tells each evaluator; 差评 reasons.")
Alerts = _section("Alerts", "alerts", "[alerts]: when the dashboard and MQTT raise an alert (gateway/web/alerts.py).")
Pairing = _section("Pairing", "pairing", "[pairing]: what `hcp tool pair` draws on each staff card.")


@dataclasses.dataclass
class Upstream:
    name: str
    kind: str
    settings: dict  # the keys given, checked; the forwarder fills in the defaults


@dataclasses.dataclass
class Config:
    path: str
    hall: Hall
    db_path: str
    retention_days: "float | None"
    max_size_mb: float
    http_host: str
    http_port: int
    token: str = dataclasses.field(repr=False)
    serial: Serial
    mqtt: "MqttIngest | None"
    device: Device
    upstreams: list  # enabled ones only
    commit_window_ms: float
    alerts: Alerts
    tls_cert: "str | None"  # [http] tls_cert / tls_key: the API serves HTTPS
    tls_key: "str | None"
    pairing: Pairing

    @property
    def reason_codes(self):
        return [code for code, _ in self.device.reasons]

    @property
    def warnings(self):
        """What is allowed but unwise, one line each naming the key
        (`load()` logs them; so does the gateway at start)."""
        out = []
        if self.tls_cert is None and not loopback(self.http_host):
            out.append("http.listen: the API listens on %s, beyond this machine, without TLS: the token and"
                       " the data cross the hall network in clear (set http.tls_cert and http.tls_key)"
                       % self.http_host)
        return out


def loopback(host):
    """A host name or address of this machine only (IPv4-mapped IPv6 too)."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def _derive(values, name, kind, settings):
    """What an [[upstream]] table gets from the rest of the config."""
    retention = (values.get("database") or {}).get("retention_days")
    if retention is not None and "retention_days" not in settings:
        settings["retention_days"] = retention
    if kind == "mqtt" and "client_id" not in settings:
        # Unique per gateway in a broker cluster, and stable across restarts.
        settings["client_id"] = "hcp-gw-%s-%s" % ((values.get("hall") or {}).get("id") or "hall", name)


def parse(data, path="<config>"):
    """Check a parsed TOML document; return a Config or raise ConfigError."""
    base = os.path.dirname(os.path.abspath(path)) if path != "<config>" else os.getcwd()
    v, problems = schema.check(data, base, _derive)
    if problems:
        raise ConfigError("bad config %s:\n  %s" % (path, "\n  ".join(problems)))
    host, port = split_listen(v["http"]["listen"])
    return Config(path=path, hall=Hall(**v["hall"]), db_path=v["database"]["path"],
                  retention_days=v["database"]["retention_days"], max_size_mb=v["database"]["max_size_mb"],
                  http_host=host, http_port=port, token=v["http"]["token"], serial=Serial(**v["serial"]),
                  mqtt=MqttIngest(**v["mqtt"]) if v["mqtt"] is not None else None, device=Device(**v["device"]),
                  upstreams=[Upstream(u["name"], u["kind"], u["settings"]) for u in v["upstream"] if u["enabled"]],
                  commit_window_ms=v["ingest"]["commit_window_ms"], alerts=Alerts(**v["alerts"]),
                  tls_cert=v["http"]["tls_cert"], tls_key=v["http"]["tls_key"], pairing=Pairing(**v["pairing"]))


def load(path):
    """Read and check the TOML file at `path`. The file holds the API token:
    one warning if its group or others may read it (`hcp gateway init`
    writes it 0600); the file is left as the admin keeps it."""
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o077:
                logging.getLogger("hcp.gateway.config").warning(
                    "config %s holds the API token and is open to others than its owner (mode %03o):"
                    " chmod 600 %s", path, mode, path)
            data = tomllib.load(f)
    except FileNotFoundError as err:
        raise ConfigError("config file not found: %s (write one with `hcp gateway init`)" % path) from err
    except OSError as err:
        raise ConfigError("cannot read config %s: %s" % (path, err)) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config %s is not valid TOML: %s" % (path, err)) from err
    cfg = parse(data, str(path))
    # Shown by every command that loads the config (`hcp gateway check` and
    # `run` included, through logging's last resort when nothing is set up).
    for warning in cfg.warnings:
        logging.getLogger("hcp.gateway.config").warning("%s", warning)
    cfg.warnings_logged = True  # the API does not log them a second time at start
    return cfg


def example():
    """The commented config `hcp gateway init` writes (every key of the
    schema, set or commented out), with a fresh random API token."""
    return schema.example_toml(secrets.token_urlsafe(24))
