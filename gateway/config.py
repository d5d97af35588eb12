"""The hall gateway's configuration: one TOML file, checked in full at start.

`load(path)` returns a `Config` or raises `ConfigError` whose message has one
line per problem, each naming the key (`http.listen: ...`). Unknown keys are
errors too: a typo must not silently fall back to a default. The tables of
`[[upstream]]` belong to the forwarders: this module checks `name` and `kind`
and hands the rest to `gateway.forward_<kind>.validate(settings)`.

`example()` is the commented file `hcp gateway init` writes; it runs as is
(serial ports found by glob, no upstream until one is configured).
"""

import dataclasses
import importlib
import ipaddress
import logging
import os
import re
import secrets
import ssl
import stat
import tomllib

from gateway.errors import ConfigError

# docs/design.md §1: the fallback 差评 list; codes are placeholders until upstream
# provides the national `getnorm` codes.
FALLBACK_REASONS = [
    ("R1", "服务态度差"),
    ("R2", "办事效率低、等待时间长"),
    ("R3", "业务不熟练、解释不清楚"),
    ("R4", "未一次性告知、需多次跑"),
    ("R5", "要求提供指南以外材料"),
    ("R6", "未在承诺时限内办结"),
    ("R7", "窗口空岗、推诿扯皮"),
    ("R8", "其他问题"),
]
FALLBACK_REASONS_VERSION = "fallback-1"

UPSTREAM_KINDS = ("mqtt", "http")
# [database] max_size_mb and POST /api/storage: a cap SQLite can hold
# (max_page_count is a u32 count of pages, 512 bytes at the smallest).
MAX_SIZE_MB = 1_000_000
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TOPIC_PART = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")


@dataclasses.dataclass
class Hall:
    id: str
    areaCode: str
    deptCode: str
    pf: str = "5"
    tz_offset_min: int = 480


@dataclasses.dataclass
class Serial:
    ports: list  # explicit paths and globs
    baudrate: int = 115200
    rescan_s: float = 2.0
    reopen_max_s: float = 10.0


@dataclasses.dataclass
class MqttIngest:
    host: str
    port: int = 1883
    topic_prefix: str = "hcp"
    username: str = ""
    password: str = ""
    keepalive_s: int = 30
    client_id: str = ""  # empty: hcp-gw-<hall>-<random>, made once and kept in the database
    tls: object = None  # None, True (system CAs) or {"ca", "cert", "key", "insecure"}, as upstreams


@dataclasses.dataclass
class Device:
    invite_timeout_s: int = 10
    heartbeat_s: int = 30
    offline_after_missed: int = 3
    stuck_ms: int = 5000
    expire_grace_s: int = 60
    reasons_version: str = FALLBACK_REASONS_VERSION
    reasons: list = dataclasses.field(default_factory=lambda: list(FALLBACK_REASONS))


@dataclasses.dataclass
class Alerts:
    """[alerts]: when the dashboard and MQTT raise an alert (gateway/alerts.py)."""
    offline_after_s: float = 300.0    # a device offline for longer than this
    stuck: bool = True                # a button the device reports stuck
    outbox_age_s: float = 120.0       # the oldest undelivered record older than this
    bad_rating: bool = True           # every 差评 of today (call back the same day)
    staff_bad_per_year: int = 2       # a staff member with this many 差评 in the year
    window_bad_share: float = 0.05    # a window whose 差评 share this month exceeds this
    low_invite_ratio: float = 0.5     # staff inviting < ratio x the median of staff this month
    mqtt: bool = True                 # publish to P/H/alert/... when [mqtt] is configured


@dataclasses.dataclass
class Upstream:
    name: str
    kind: str
    settings: dict


@dataclasses.dataclass
class Config:
    path: str
    hall: Hall
    db_path: str
    retention_days: float
    max_size_mb: float
    http_host: str
    http_port: int
    token: str
    serial: Serial
    mqtt: "MqttIngest | None"
    device: Device
    upstreams: list
    commit_window_ms: float = 0.0
    alerts: Alerts = dataclasses.field(default_factory=Alerts)
    tls_cert: "str | None" = None  # [http] tls_cert / tls_key: the API serves HTTPS
    tls_key: "str | None" = None

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


def _encrypted_key():
    raise ValueError("the private key is encrypted: the gateway needs it unencrypted"
                     " (readable by the gateway's user only)")


def http_tls_context(cert, key):
    """The API's TLS server context: TLS 1.2 and up, the certificate chain
    `cert` (PEM) with its private key `key` (PEM, unencrypted). Raises
    OSError, ssl.SSLError or ValueError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key, password=_encrypted_key)
    return ctx


def _http_tls(c, cert, key, base):
    """[http] tls_cert and tls_key: both or neither; readable PEM files that
    make a TLS server context. Paths relative to the config file."""
    if not cert and not key:
        return None, None
    if not cert or not key:
        c.err("http.tls_key" if cert else "http.tls_cert",
              "give both http.tls_cert and http.tls_key (PEM files), or neither")
        return None, None
    cert, key = os.path.join(base, cert), os.path.join(base, key)
    texts = {}
    for name, path, marker in (("http.tls_cert", cert, "-----BEGIN CERTIFICATE-----"),
                               ("http.tls_key", key, "PRIVATE KEY-----")):
        try:
            with open(path, "rb") as f:
                texts[name] = f.read(1 << 20).decode("ascii", "replace")
        except OSError as err:
            c.err(name, "cannot read %s: %s" % (path, err.strerror or err))
            continue
        if marker not in texts[name]:
            c.err(name, "%s is not a PEM %s (%s)" % (path, "certificate" if name == "http.tls_cert"
                                                     else "private key", marker.strip("-")))
            del texts[name]
    if len(texts) == 2:
        try:
            http_tls_context(cert, key)
        except (OSError, ssl.SSLError, ValueError) as err:
            c.err("http.tls_cert", "cannot serve TLS with %s and the key %s: %s" % (cert, key, err))
    return cert, key


class _Checker:
    """Collects problems as 'key: what is wrong' lines."""

    def __init__(self):
        self.errors = []

    def err(self, key, msg):
        self.errors.append("%s: %s" % (key, msg))

    def table(self, data, key, required=False):
        v = data.get(key.rsplit(".", 1)[-1])
        if v is None:
            if required:
                self.err(key, "missing table [%s]" % key)
            return {}
        if not isinstance(v, dict):
            self.err(key, "must be a table")
            return {}
        return v

    def unknown(self, data, prefix, allowed):
        for k in data:
            if k not in allowed:
                self.err("%s.%s" % (prefix, k) if prefix else k,
                         "unknown key (allowed: %s)" % ", ".join(sorted(allowed)))

    def get(self, data, prefix, key, kind, default=None, required=False, check=None, why=""):
        full = "%s.%s" % (prefix, key)
        if key not in data:
            if required:
                self.err(full, "missing (required)")
            return default
        v = data[key]
        ok = True
        if kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif kind is str:
            ok = isinstance(v, str)
        elif kind is list:
            ok = isinstance(v, list)
        elif kind is bool:
            ok = isinstance(v, bool)
        if not ok:
            self.err(full, "must be %s, got %r" % (_KIND_NAMES[kind], v))
            return default
        if check is not None and not check(v):
            self.err(full, "%s, got %r" % (why, v))
            return default
        return v


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", bool: "true or false"}


def _tls_paths(tls, base):
    """Certificate paths of a `tls` table are relative to the config file,
    like the database's."""
    if not isinstance(tls, dict):
        return tls
    return {k: (os.path.join(base, v) if k in ("ca", "cert", "key") and isinstance(v, str) and v
                and not os.path.isabs(v) else v) for k, v in tls.items()}


def _tls(c, tls, prefix, base):
    """`[mqtt] tls` as the forwarders take theirs: true, or {ca, cert, key, insecure}."""
    tls = _tls_paths(tls, base)
    from gateway.forward_common import Checker

    checker = Checker({"tls": tls}, prefix)
    checker.tls()
    c.errors.extend(checker.errors)
    return tls or None


def secret(c, data, prefix, key, base):
    """`key` inline, or `key_file` (a path relative to the config file whose
    first line is the secret: keeps it out of a config that is shared)."""
    inline = c.get(data, prefix, key, str, "")
    path = c.get(data, prefix, key + "_file", str, "")
    if inline and path:
        c.err("%s.%s_file" % (prefix, key), "give %s or %s_file, not both" % (key, key))
    if not path:
        return inline
    path = os.path.join(base, path)
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except (OSError, UnicodeDecodeError) as err:
        c.err("%s.%s_file" % (prefix, key), "cannot read %s: %s" % (path, getattr(err, "strerror", None) or err))
        return ""


def _listen(c, value):
    m = re.match(r"^(\[[^\]]+\]|[^:]+):(\d+)$", value or "")
    if not m:
        c.err("http.listen", "must be HOST:PORT, got %r" % value)
        return "127.0.0.1", 8780
    host = m.group(1).strip("[]")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        c.err("http.listen", "port must be 0..65535, got %d" % port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            c.err("http.listen", "host must be an IP address or localhost, got %r" % host)
    return host, port


def _reasons(c, dev):
    raw = dev.get("reasons")
    if raw is None:
        return list(FALLBACK_REASONS)
    if not isinstance(raw, list) or not raw:
        c.err("device.reasons", "must be a non-empty list of {code, label} tables")
        return list(FALLBACK_REASONS)
    out = []
    seen = set()
    for i, item in enumerate(raw):
        key = "device.reasons[%d]" % i
        if not isinstance(item, dict) or not isinstance(item.get("code"), str) or not item.get("code"):
            c.err(key, "must be a table with a non-empty string `code` (and a `label`)")
            continue
        code = item["code"]
        if code in seen:
            c.err(key + ".code", "duplicate reason code %r" % code)
        if "," in code or len(code.encode()) > 255:
            c.err(key + ".code", "must be at most 255 bytes without commas, got %r" % code)
        seen.add(code)
        label = item.get("label", code)
        if not isinstance(label, str):
            c.err(key + ".label", "must be a string")
            label = code
        out.append((code, label))
    if len(out) > 32:
        c.err("device.reasons", "at most 32 reasons fit the device, got %d" % len(out))
    return out


def _forwarder_module(kind):
    return importlib.import_module("gateway.forward_%s" % kind)


def _upstreams(c, data, retention=None, hall_id="hall", base="."):
    raw = data.get("upstream", [])
    if not isinstance(raw, list):
        c.err("upstream", "must be an array of tables: [[upstream]]")
        return []
    out = []
    names = set()
    for i, item in enumerate(raw):
        key = "upstream[%d]" % i
        if not isinstance(item, dict):
            c.err(key, "must be a table")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            c.err(key + ".name", "must be 1-32 characters of A-Z a-z 0-9 _ -, got %r" % (name,))
            continue
        key = "upstream[%d] (%s)" % (i, name)
        if name in names:
            c.err(key + ".name", "duplicate upstream name")
        names.add(name)
        kind = item.get("kind", item.get("type"))
        if kind not in UPSTREAM_KINDS:
            c.err(key + ".kind", "must be one of %s, got %r" % (", ".join(UPSTREAM_KINDS), kind))
            continue
        settings = {k: v for k, v in item.items() if k not in ("name", "kind", "type")}
        if retention is not None and "retention_days" not in settings:
            settings["retention_days"] = retention
        if kind == "mqtt" and "client_id" not in settings:
            # Unique per gateway in a broker cluster, and stable across restarts.
            settings["client_id"] = "hcp-gw-%s-%s" % (hall_id, name)
        if "tls" in settings:
            settings["tls"] = _tls_paths(settings["tls"], base)
        if "password_file" in settings:  # the secret stays out of a config that is shared
            settings["password"] = secret(c, settings, key, "password", base)
            del settings["password_file"]
        try:
            mod = _forwarder_module(kind)
        except ImportError as err:
            c.err(key + ".kind", "forwarder for %r is not available: %s" % (kind, err))
            continue
        for problem in mod.validate(settings, prefix="upstream.%s" % name) or []:
            c.errors.append(problem)
        out.append(Upstream(name, kind, settings))
    return out


def _alerts(c, a):
    c.unknown(a, "alerts", {f.name for f in dataclasses.fields(Alerts)})
    d = Alerts()
    return Alerts(
        offline_after_s=c.get(a, "alerts", "offline_after_s", float, d.offline_after_s,
                              check=lambda v: 0 <= v <= 7 * 86400, why="must be 0..604800 s"),
        stuck=c.get(a, "alerts", "stuck", bool, d.stuck),
        outbox_age_s=c.get(a, "alerts", "outbox_age_s", float, d.outbox_age_s,
                           check=lambda v: 1 <= v <= 7 * 86400, why="must be 1..604800 s"),
        bad_rating=c.get(a, "alerts", "bad_rating", bool, d.bad_rating),
        staff_bad_per_year=c.get(a, "alerts", "staff_bad_per_year", int, d.staff_bad_per_year,
                                 check=lambda v: 1 <= v <= 1000, why="must be 1..1000"),
        window_bad_share=c.get(a, "alerts", "window_bad_share", float, d.window_bad_share,
                               check=lambda v: 0 <= v < 1, why="must be a fraction 0..1 (0.05 = 5%)"),
        low_invite_ratio=c.get(a, "alerts", "low_invite_ratio", float, d.low_invite_ratio,
                               check=lambda v: 0 <= v <= 1, why="must be 0..1 (0 = never)"),
        mqtt=c.get(a, "alerts", "mqtt", bool, d.mqtt),
    )


def parse(data, path="<config>"):
    """Check a parsed TOML document; return a Config or raise ConfigError."""
    c = _Checker()
    base = os.path.dirname(os.path.abspath(path)) if path != "<config>" else os.getcwd()
    c.unknown(data, "", {"hall", "database", "http", "serial", "mqtt", "device", "upstream", "ingest",
                       "alerts"})

    h = c.table(data, "hall", required=True)
    c.unknown(h, "hall", {"id", "areaCode", "deptCode", "pf", "tz_offset_min"})
    hall = Hall(
        id=c.get(h, "hall", "id", str, "hall", required=True,
                 check=lambda v: bool(_NAME.match(v)), why="must be 1-32 characters of A-Z a-z 0-9 _ -"),
        areaCode=c.get(h, "hall", "areaCode", str, "", required=True,
                       check=lambda v: v.isdigit() and 6 <= len(v) <= 12,
                       why="must be the 6-12 digit administrative area code"),
        deptCode=c.get(h, "hall", "deptCode", str, "", required=True,
                       check=lambda v: bool(v.strip()), why="must not be empty"),
        pf=c.get(h, "hall", "pf", str, "5", check=lambda v: bool(v.strip()), why="must not be empty"),
        tz_offset_min=c.get(h, "hall", "tz_offset_min", int, 480,
                            check=lambda v: -840 <= v <= 840, why="must be -840..840 minutes"),
    )

    d = c.table(data, "database")
    c.unknown(d, "database", {"path", "retention_days", "max_size_mb"})
    db_path = c.get(d, "database", "path", str, "hcp-gateway.db", check=bool, why="must not be empty")
    db_path = os.path.join(base, db_path)
    retention = c.get(d, "database", "retention_days", float, None,
                      check=lambda v: v >= 0, why="must be >= 0 days")
    max_size = c.get(d, "database", "max_size_mb", float, 0.0,
                     check=lambda v: 0 <= v <= MAX_SIZE_MB, why="must be 0..%d MB (0 = no cap)" % MAX_SIZE_MB)
    if os.path.isdir(db_path):
        c.err("database.path", "is a directory: %s" % db_path)
    elif not os.path.isdir(os.path.dirname(db_path)):
        c.err("database.path", "directory does not exist: %s" % os.path.dirname(db_path))

    w = c.table(data, "http")
    c.unknown(w, "http", {"listen", "token", "tls_cert", "tls_key"})
    host, port = _listen(c, c.get(w, "http", "listen", str, "127.0.0.1:8780"))
    token = c.get(w, "http", "token", str, "", required=True,
                  check=lambda v: len(v) >= 16, why="must be at least 16 characters")
    tls_cert, tls_key = _http_tls(c, c.get(w, "http", "tls_cert", str, ""), c.get(w, "http", "tls_key", str, ""),
                                  base)

    s = c.table(data, "serial")
    c.unknown(s, "serial", {"ports", "baudrate", "rescan_s", "reopen_max_s"})
    ports = c.get(s, "serial", "ports", list, [],
                  check=lambda v: all(isinstance(p, str) and p for p in v),
                  why="must be a list of device paths or globs")
    serial = Serial(
        ports=ports,
        baudrate=c.get(s, "serial", "baudrate", int, 115200, check=lambda v: 1200 <= v <= 4_000_000,
                       why="must be 1200..4000000"),
        rescan_s=c.get(s, "serial", "rescan_s", float, 2.0, check=lambda v: 0.05 <= v <= 3600,
                       why="must be 0.05..3600 s"),
        reopen_max_s=c.get(s, "serial", "reopen_max_s", float, 10.0, check=lambda v: 0.05 <= v <= 3600,
                           why="must be 0.05..3600 s"),
    )

    mqtt = None
    m = c.table(data, "mqtt")
    if m:
        c.unknown(m, "mqtt", {"host", "port", "topic_prefix", "username", "password", "password_file",
                              "keepalive_s", "client_id", "tls"})
        mqtt = MqttIngest(
            host=c.get(m, "mqtt", "host", str, "127.0.0.1", required=True, check=bool, why="must not be empty"),
            port=c.get(m, "mqtt", "port", int, 1883, check=lambda v: 1 <= v <= 65535, why="must be 1..65535"),
            topic_prefix=c.get(m, "mqtt", "topic_prefix", str, "hcp",
                               check=lambda v: bool(_TOPIC_PART.match(v)) and "+" not in v and "#" not in v,
                               why="must be a plain topic path (no wildcards)"),
            username=c.get(m, "mqtt", "username", str, ""),
            password=secret(c, m, "mqtt", "password", base),
            keepalive_s=c.get(m, "mqtt", "keepalive_s", int, 30, check=lambda v: 5 <= v <= 3600,
                              why="must be 5..3600 s"),
            client_id=c.get(m, "mqtt", "client_id", str, "",
                            check=lambda v: len(v) <= 64 and all(" " < ch < "\x7f" for ch in v),
                            why="must be at most 64 printable ASCII characters"),
            tls=_tls(c, m.get("tls"), "mqtt", base),
        )

    g = c.table(data, "ingest")
    c.unknown(g, "ingest", {"commit_window_ms"})
    window = c.get(g, "ingest", "commit_window_ms", float, 0.0, check=lambda v: 0 <= v <= 100,
                   why="must be 0..100 ms")

    v = c.table(data, "device")
    c.unknown(v, "device", {"invite_timeout_s", "heartbeat_s", "offline_after_missed", "stuck_ms",
                            "expire_grace_s", "reasons_version", "reasons"})
    device = Device(
        invite_timeout_s=c.get(v, "device", "invite_timeout_s", int, 10, check=lambda x: 1 <= x <= 3600,
                               why="must be 1..3600 s"),
        heartbeat_s=c.get(v, "device", "heartbeat_s", int, 30, check=lambda x: 1 <= x <= 3600,
                          why="must be 1..3600 s"),
        offline_after_missed=c.get(v, "device", "offline_after_missed", int, 3, check=lambda x: 1 <= x <= 100,
                                   why="must be 1..100 heartbeats"),
        stuck_ms=c.get(v, "device", "stuck_ms", int, 5000, check=lambda x: 100 <= x <= 65535,
                       why="must be 100..65535 ms"),
        expire_grace_s=c.get(v, "device", "expire_grace_s", int, 60, check=lambda x: 0 <= x <= 86400,
                             why="must be 0..86400 s"),
        reasons_version=c.get(v, "device", "reasons_version", str, FALLBACK_REASONS_VERSION,
                              check=lambda x: 0 < len(x.encode()) <= 255, why="must be 1..255 bytes"),
        reasons=_reasons(c, v),
    )

    alerts = _alerts(c, c.table(data, "alerts"))
    upstreams = _upstreams(c, data, retention, hall_id=hall.id, base=base)

    if c.errors:
        raise ConfigError("bad config %s:\n  %s" % (path, "\n  ".join(c.errors)))
    return Config(path=path, hall=hall, db_path=db_path, retention_days=retention, max_size_mb=max_size,
                  http_host=host, http_port=port, token=token, serial=serial, mqtt=mqtt, device=device,
                  upstreams=upstreams, commit_window_ms=window, alerts=alerts, tls_cert=tls_cert, tls_key=tls_key)


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


EXAMPLE = '''\
# hcp hall gateway configuration (TOML). Written by `hcp gateway init`;
# `hcp gateway run --config THIS_FILE` starts the gateway with it.
# Relative paths are relative to this file.

[hall]
id = "hall-1"                 # this hall: MQTT topics and client ids use it
areaCode = "330100"           # administrative area code (provincial field areaCode)
deptCode = "001"              # department code (deptCode)
pf = "5"                      # channel code: 5 = 政务大厅其他终端 (differs per province)
tz_offset_min = 480           # hall local time = UTC + this (assessTime, device clocks)

[database]
path = "hcp-gateway.db"       # SQLite, WAL + synchronous=FULL; keep on local disk
retention_days = 30           # delivered outbox rows older than this are purged
                              # (default of every [[upstream]]; one may set its own)
# max_size_mb = 0             # cap the database size (0 = no cap)

[http]
# The JSON API of the counter system and the technician tools (gateway/README.md).
listen = "127.0.0.1:8780"     # another address than loopback: the hall network sees the
                              # API; without TLS (below) the token and data cross it in clear
token = "%(token)s"   # clients send `Authorization: Bearer <token>`
# HTTPS (TLS 1.2+): the certificate chain and its unencrypted private key, PEM
# files; both or neither. Clients then use https://, trusting the issuing CA
# (hcp tool ... --cacert CA.pem, or $HCP_CACERT).
# tls_cert = "gateway-cert.pem"
# tls_key = "gateway-key.pem"  # readable by the gateway's user only

[serial]
# Explicit paths and globs; globs are re-read every rescan_s, so a port that
# is renamed or re-plugged is found again.
ports = ["/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*"]
baudrate = 115200
rescan_s = 2.0
reopen_max_s = 10.0           # cap of the back-off when a port fails to open

# Wi-Fi evaluators speak the same frames over MQTT:
#   device -> gateway  <topic_prefix>/<hall.id>/dev/<device_id>/up
#   gateway -> device  <topic_prefix>/<hall.id>/dev/<device_id>/down
# and the gateway publishes retained state/availability topics there.
# [mqtt]
# host = "127.0.0.1"
# port = 1883
# topic_prefix = "hcp"
# username = ""
# password = ""

[device]
invite_timeout_s = 10         # how long an invitation (一次一评) stays open on the device
heartbeat_s = 30              # device health period; offline after offline_after_missed
offline_after_missed = 3
stuck_ms = 5000               # a button held longer than this counts as stuck
expire_grace_s = 60           # an invitation no answer came for within its timeout plus
                              # this is marked expired (the device was off or never got
                              # it); a late answer from the device's journal still counts
# 差评 reasons shown on the device; replace with the upstream (getnorm) list:
# reasons_version = "fallback-1"
# reasons = [{ code = "R1", label = "服务态度差" }, { code = "R2", label = "办事效率低、等待时间长" }]

[alerts]
# Shown on the dashboard (http://<http.listen>/) and, with [mqtt], published
# retained to <topic_prefix>/<hall.id>/alert/<rule>/<subject> (gateway/README.md).
offline_after_s = 300         # a device offline for longer than this
stuck = true                  # a button the device reports stuck
outbox_age_s = 120            # the oldest undelivered record older than this (120 s rule)
bad_rating = true             # each 差评 of today, so the hall can call back the same day
staff_bad_per_year = 2        # a staff member with this many 差评 in the calendar year
window_bad_share = 0.05       # a window whose 差评 share of this month's ratings exceeds this
low_invite_ratio = 0.5        # staff inviting fewer than this x the median of staff this month
mqtt = true                   # publish alerts when [mqtt] is configured

# Upstream targets: each gets every record once (its own outbox rows); the
# keys besides name and kind belong to the forwarder (gateway/forward_http.py,
# gateway/forward_mqtt.py document them).
# [[upstream]]
# name = "province"
# kind = "http"
# url = "https://platform.example/api/evaluations"
# token = "..."
#
# [[upstream]]
# name = "hall-broker"
# kind = "mqtt"
# host = "127.0.0.1"
# topic = "hcp/records/{client_id}"
'''


def example():
    """The commented example config, with a fresh random API token."""
    return EXAMPLE % {"token": secrets.token_urlsafe(24)}
