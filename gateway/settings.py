"""Every key of the gateway's config (hall.toml), declared once.

Each key has a type, a range or choices, a default, a unit, one line of doc,
and says whether it is required, a path (relative to the config file) or a
secret. From this one table come:

- the checks: `check(doc, base)` reads a whole TOML document, and
  `upstream_settings()` / `upstream_problems()` one `[[upstream]]` table (the
  forwarders call them): one checker, one message per problem, each naming
  its key (`section.key: what is wrong`); unknown keys are errors;
- the values, with the defaults filled in (gateway/config.py builds the
  `Config` the gateway runs on from them; its section classes are made from
  these tables, so a default is written here only);
- the commented file `hcp gateway init` writes (`example_toml()`): every key,
  set or commented out, runs as is;
- the reference docs/config.md (`reference_markdown()`). Regenerate it with

      .venv/bin/python -m gateway.settings > docs/config.md

  (tests/test_config_schema.py fails while it differs).

The `[[upstream]]` tables belong to the forwarders (gateway/forward/mqtt.py,
gateway/forward/http.py tell how they work); their keys are declared here
too, per kind. Their problems keep the forwarders' wording ("required",
"must be an integer 1..65535"), the other tables the gateway's ("missing
(required)", "must be 1..65535"): tests of both pin them.
"""

import copy
import ipaddress
import json
import os
import re
import ssl
import string
import urllib.parse

from gateway import tomlw
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
MAX_REASONS = 32  # what fits the device's reason pages
# [database] max_size_mb and POST /api/storage: a cap SQLite can hold
# (max_page_count is a u32 count of pages, 512 bytes at the smallest).
MAX_SIZE_MB = 1_000_000
# The evaluation URL of a staff card's QR code (tools/pair.py fills it in).
DEFAULT_URL_TEMPLATE = "HTTPS://HALL.EXAMPLE/E/{staff_id}"
URL_FIELDS = ("staff_id", "window", "device_id")
UPSTREAM_KINDS = ("mqtt", "http")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TOPIC_PART = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")
_LISTEN = re.compile(r"^(\[[^\]]+\]|[^:]+):(\d+)$")

_REQUIRED = object()  # the default of a key that has none


# ---------------------------------------------------------------- checks of one value
# A check takes the value (of the right type, in range) and returns None when
# it is good, else what is wrong (or False: the key's `why`).

def _name(v):
    return None if _NAME.match(v) else "must be 1-32 characters of A-Z a-z 0-9 _ -"


def _not_blank(v):
    return None if v.strip() else "must not be empty"


def split_listen(value):
    """("host", port) of an `[http] listen` value HOST:PORT ([v6]:PORT too),
    or ValueError saying what is wrong."""
    m = _LISTEN.match(value or "")
    if not m:
        raise ValueError("must be HOST:PORT, got %r" % (value,))
    host, port = m.group(1).strip("[]"), int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0..65535, got %d" % port)
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("host must be an IP address or localhost, got %r" % host) from None
    return host, port


def _listen(v):
    try:
        split_listen(v)
    except ValueError as err:
        return str(err)
    return None


def url_template_problem(template):
    """What is wrong with a staff card's evaluation URL template, or None:
    Python format fields, only {staff_id}, {window}, {device_id}, and
    {staff_id} always (one code, one account)."""
    try:
        names = {f[1] for f in string.Formatter().parse(template) if f[1] is not None}
    except ValueError as err:
        return "bad URL template %r: %s" % (template, err)
    unknown = names - set(URL_FIELDS)
    if unknown:
        return ("uses unknown field(s) %s; use {staff_id}, {window}, {device_id}"
                % ", ".join("{%s}" % n for n in sorted(unknown)))
    if "staff_id" not in names:
        return "must contain {staff_id}: one code, one account"
    return None


def _records_topic(v):
    if "+" in v or "#" in v:
        return "must not contain the wildcards + or #"
    try:
        v.format(client_id="x", name="x")
    except (KeyError, IndexError, ValueError):
        return "only {client_id} and {name} may be substituted"
    return None


def _http_url(v):
    u = urllib.parse.urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        return "must be an http:// or https:// URL with a host"
    try:
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "has a bad port"
    return None


# ---------------------------------------------------------------- declarations

class Key:
    """One key of a table.

    kind: "int", "number" (int or float, read as float), "str", "bool",
    "strings" (a list of non-empty strings), "tls", "headers", "reasons".
    default: the value when the key is absent (_REQUIRED: it must be given;
    None: unset; a function of the table's other values: derived).
    lo, hi: the range of a number (inclusive); choices: of a string.
    check: a function of the value (above); why: the message when the
    check says False or, if given, when the value is out of range.
    path: a file path, relative to the config file; secret: keep it out of
    logs and shared files; reads: this key names a file whose first line
    is the value of key `reads` (e.g. password_file -> password).
    example, commented: what `hcp gateway init` writes (the default when
    no example; a function of {"token": ...}: made at each init), and
    whether it is commented out; default_doc, allowed: the default and the
    values allowed as the reference tells them, when the declaration alone
    does not say it. what: the kind as an error message names it."""

    def __init__(self, name, kind, default=None, doc="", *, lo=None, hi=None, unit="", choices=None,
                 check=None, why=None, empty=False, path=False, secret=False, reads=None,
                 example=None, commented=False, default_doc=None, what=None, allowed=None):
        self.name, self.kind, self.default, self.doc = name, kind, default, doc
        self.lo, self.hi, self.unit, self.choices = lo, hi, unit, choices
        self.check, self.why, self.empty = check, why, empty
        self.path, self.secret, self.reads = path, secret, reads
        self.example, self.commented, self.default_doc, self.what = example, commented, default_doc, what
        self.allowed = allowed

    @property
    def required(self):
        return self.default is _REQUIRED

    def __repr__(self):
        return "Key(%r)" % self.name


class Table:
    """A [section]: its keys, one paragraph of doc (the init file's comment
    above it), whether it may be left out as a whole (`optional`: no values
    at all then, e.g. no [mqtt] = no MQTT ingest), and `after`: checks
    across its keys, after each key was checked on its own:
    after(values, given, err, base); err(key, message)."""

    def __init__(self, name, doc, keys, *, optional=False, after=None, forwarder=False):
        self.name, self.doc, self.keys = name, doc, keys
        self.optional, self.after, self.forwarder = optional, after, forwarder
        self.by_name = {k.name: k for k in keys}

    def defaults(self):
        """{key: default} of the keys with one (derived ones left out)."""
        return {k.name: copy.deepcopy(k.default) for k in self.keys
                if not k.required and not callable(k.default) and not k.reads}


def _tls_key(doc):
    return Key("tls", "tls", None, doc, commented=True, example={"ca": "certs/ca.crt"},
               default_doc="none (plain TCP)")


# -- [http] across keys: TLS both or neither, readable PEM files that make a context

def _encrypted_key():
    raise ValueError("the private key is encrypted: the gateway needs it unencrypted"
                     " (readable by the gateway's user only)")


def http_tls_context(cert, key):
    """The API's TLS server context: TLS 1.2 and up, the certificate chain
    `cert` (PEM) with its private key `key` (PEM, unencrypted). Raises
    OSError, ssl.SSLError or ValueError. The check at load makes the very
    context the API serves with."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key, password=_encrypted_key)
    return ctx


def _http_after(values, given, err, base):
    cert, key = values.get("tls_cert"), values.get("tls_key")
    if any(values.get(k) is None for k in given & {"tls_cert", "tls_key"}):
        return  # a wrong value, already named
    if not cert and not key:
        values["tls_cert"] = values["tls_key"] = None
        return
    if not cert or not key:
        err("tls_key" if cert else "tls_cert", "give both http.tls_cert and http.tls_key (PEM files), or neither")
        return
    texts = {}
    for name, path, marker in (("tls_cert", cert, "-----BEGIN CERTIFICATE-----"),
                               ("tls_key", key, "PRIVATE KEY-----")):
        try:
            with open(path, "rb") as f:
                texts[name] = f.read(1 << 20).decode("ascii", "replace")
        except OSError as e:
            err(name, "cannot read %s: %s" % (path, e.strerror or e))
            continue
        if marker not in texts[name]:
            err(name, "%s is not a PEM %s (%s)" % (path, "certificate" if name == "tls_cert" else "private key",
                                                   marker.strip("-")))
            del texts[name]
    if len(texts) == 2:
        try:
            http_tls_context(cert, key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            err("tls_cert", "cannot serve TLS with %s and the key %s: %s" % (cert, key, e))


def _database_after(values, given, err, base):
    path = values.get("path")
    if not path:
        return
    if os.path.isdir(path):
        err("path", "is a directory: %s" % path)
    elif not os.path.isdir(os.path.dirname(path)):
        err("path", "directory does not exist: %s" % os.path.dirname(path))


def _backoff_after(values, given, err):
    lo, hi = values.get("backoff_min_s"), values.get("backoff_max_s")
    if {"backoff_min_s", "backoff_max_s"} <= given and lo is not None and hi is not None and lo > hi:
        err("backoff_max_s", "must be >= backoff_min_s")


def _mqtt_upstream_after(values, given, err, base):
    if values.get("password") is not None and values.get("username") is None:
        err("password", "given without username")
    _backoff_after(values, given, err)


def _http_upstream_after(values, given, err, base):
    url = values.get("url")
    if values.get("tls") and url and _http_url(url) is None and urllib.parse.urlsplit(url).scheme != "https":
        err("tls", "given for a URL that is not https://")
    _backoff_after(values, given, err)


def _forwarder_common():
    """Keys of every kind of [[upstream]] (gateway/forward/base.py)."""
    return [
        Key("poll_s", "number", 0.25, "how often to look for new rows without being woken", lo=0.01, hi=60,
            unit="s", commented=True),
        Key("backoff_min_s", "number", 0.2, "first retry (reconnect) delay after a failure; doubles up to"
            " backoff_max_s", lo=0.001, hi=3600, unit="s", commented=True),
        Key("backoff_max_s", "number", 30.0, "cap of the retry delay", lo=0.001, hi=86400, unit="s",
            commented=True),
        Key("retention_days", "number", 7.0, "delivered rows of this target are deleted after this long",
            lo=0, hi=36500, unit="days", commented=True, default_doc="[database] retention_days, else 7"),
        Key("purge_every_s", "number", 3600.0, "how often to look for delivered rows to delete", lo=0.1,
            hi=86400 * 30, unit="s", commented=True),
    ]


TABLES = [
    Table("hall", "This hall: its id names MQTT topics and client ids; its codes go into every upstream record.", [
        Key("id", "str", _REQUIRED, "this hall's id (MQTT topics and client ids use it)", check=_name,
            example="hall-1", allowed="1-32 of A-Z a-z 0-9 _ -"),
        Key("areaCode", "str", _REQUIRED, "administrative area code (the records' areaCode)",
            check=lambda v: v.isdigit() and 6 <= len(v) <= 12,
            why="must be the 6-12 digit administrative area code", example="330100"),
        Key("deptCode", "str", _REQUIRED, "department code (the records' deptCode)", check=_not_blank,
            example="001", allowed="not blank"),
        Key("pf", "str", "5", "channel code: 5 = 政务大厅其他终端 (differs per province)", check=_not_blank,
            allowed="not blank"),
        Key("tz_offset_min", "int", 480, "hall local time = UTC + this (assessTime, device clocks)",
            lo=-840, hi=840, unit="min"),
    ]),
    Table("database", "The SQLite database: events, the outbox, devices and their keys, bindings, alerts.", [
        Key("path", "str", "hcp-gateway.db", "the SQLite file (WAL, synchronous=FULL); keep it on a local disk",
            path=True),
        Key("retention_days", "number", None, "delivered outbox rows older than this are purged: the default of"
            " every [[upstream]] (one may set its own)", lo=0, hi=36500, unit="days", example=30,
            default_doc="unset: each upstream's (7)"),
        Key("max_size_mb", "number", 0.0, "cap of the database's size (SQLite max_page_count); 0 = no cap",
            lo=0, hi=MAX_SIZE_MB, unit="MB", commented=True),
    ], after=_database_after),
    Table("http", "The JSON API of the counter system and the technician's tools, and the dashboard (gateway/"
          "README.md). Beyond loopback the hall network reaches it: without TLS the token and the data cross"
          " it in clear. With tls_cert and tls_key it is HTTPS (TLS 1.2+); clients then trust the issuing CA"
          " (hcp tool ... --cacert CA.pem, or $HCP_CACERT).", [
        Key("listen", "str", "127.0.0.1:8780", "HOST:PORT the API and dashboard listen on", check=_listen,
            allowed="HOST:PORT, HOST an IP address or localhost"),
        Key("token", "str", _REQUIRED, "the API's bearer token: clients send `Authorization: Bearer <token>`",
            check=lambda v: len(v) >= 16, why="must be at least 16 characters", secret=True,
            example=lambda made: made["token"], default_doc="**required** (init makes a random one)"),
        Key("tls_cert", "str", None, "HTTPS: the certificate chain, PEM (with tls_key: both or neither)",
            empty=True, path=True, example="gateway-cert.pem", commented=True, default_doc="none (plain http)"),
        Key("tls_key", "str", None, "HTTPS: its private key, PEM, unencrypted, readable by the gateway's user only",
            empty=True, path=True, secret=True, example="gateway-key.pem", commented=True, default_doc="none"),
    ], after=_http_after),
    Table("serial", "Evaluators on serial lines (USB). Globs are read again every rescan_s, so a port that is"
          " renamed or plugged in again is found.", [
        Key("ports", "strings", [], "device paths and globs", what="a list of device paths or globs",
            example=["/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*"], default_doc="none"),
        Key("baudrate", "int", 115200, "line speed", lo=1200, hi=4_000_000, unit="baud"),
        Key("rescan_s", "number", 2.0, "how often the globs are read again", lo=0.05, hi=3600, unit="s"),
        Key("reopen_max_s", "number", 10.0, "cap of the back-off when a port fails to open", lo=0.05, hi=3600,
            unit="s"),
    ]),
    Table("mqtt", "Wi-Fi evaluators speak the same frames over MQTT: device -> gateway on"
          " <topic_prefix>/<hall.id>/dev/<device_id>/up, gateway -> device on .../down; the gateway publishes"
          " retained state and availability topics there. Without this table, no MQTT ingest."
          " `hcp gateway broker-config` writes a broker for it (TLS, a user each, an ACL).", [
        Key("host", "str", _REQUIRED, "the hall broker's host name or address", example="127.0.0.1"),
        Key("port", "int", 1883, "the broker's port", lo=1, hi=65535),
        Key("topic_prefix", "str", "hcp", "first level of every topic",
            check=lambda v: bool(_TOPIC_PART.match(v)) and "+" not in v and "#" not in v,
            why="must be a plain topic path (no wildcards)"),
        Key("username", "str", "", "the gateway's broker user", empty=True, commented=True, example="hcp-gateway"),
        Key("password", "str", "", "its password (or password_file)", empty=True, secret=True, commented=True,
            example="..."),
        Key("password_file", "str", None, "a file whose first line is the password: keeps it out of a shared"
            " config", path=True, secret=True, reads="password", commented=True, example="gateway.password",
            default_doc="none"),
        Key("keepalive_s", "int", 30, "MQTT keepalive", lo=5, hi=3600, unit="s", commented=True),
        Key("client_id", "str", "", "the gateway's client id; empty: hcp-gw-<hall.id>-<random>, made once and"
            " kept in the database", empty=True,
            check=lambda v: len(v) <= 64 and all(" " < ch < "\x7f" for ch in v),
            why="must be at most 64 printable ASCII characters", commented=True, example="hcp-gw-hall-1"),
        _tls_key("TLS to the broker: true (the system's CAs) or { ca, cert, key, insecure } (files relative"
                 " to this one)"),
    ], optional=True),
    Table("ingest", "How events are stored: group commit (one transaction per batch; the batch follows the"
          " load).", [
        Key("commit_window_ms", "number", 0.0, "linger before each batch, for fewer, larger commits; 0 = none",
            lo=0, hi=100, unit="ms"),
    ]),
    Table("device", "What the gateway tells each evaluator, and when it counts one as offline.", [
        Key("invite_timeout_s", "int", 10, "how long an invitation (一次一评) stays open on the device",
            lo=1, hi=3600, unit="s"),
        Key("heartbeat_s", "int", 30, "device health period", lo=1, hi=3600, unit="s"),
        Key("offline_after_missed", "int", 3, "a device is offline after this many missed heartbeats",
            lo=1, hi=100, unit="heartbeats"),
        Key("stuck_ms", "int", 5000, "a button held longer than this counts as stuck", lo=100, hi=65535, unit="ms"),
        Key("expire_grace_s", "int", 60, "an invitation unanswered within its timeout plus this is expired; a late"
            " answer from the device's journal still counts", lo=0, hi=86400, unit="s"),
        Key("reasons_version", "str", FALLBACK_REASONS_VERSION, "version of the 差评 reason list",
            check=lambda v: 0 < len(v.encode()) <= 255, why="must be 1..255 bytes", commented=True),
        Key("reasons", "reasons", list(FALLBACK_REASONS), "差评 reasons shown on the device, in this order:"
            " replace with the upstream (getnorm) list", commented=True,
            example=[{"code": c, "label": label} for c, label in FALLBACK_REASONS[:2]],
            default_doc="R1..R8, a fallback list",
            allowed="1..%d; codes unique, at most 255 bytes, no commas" % MAX_REASONS),
    ]),
    Table("alerts", "When the dashboard (http://<http.listen>/) and, with [mqtt], the retained topics"
          " <topic_prefix>/<hall.id>/alert/<rule>/<subject> raise an alert (gateway/README.md).", [
        Key("offline_after_s", "number", 300.0, "a device offline for longer than this", lo=0, hi=7 * 86400,
            unit="s"),
        Key("stuck", "bool", True, "a button the device reports stuck"),
        Key("outbox_age_s", "number", 120.0, "the oldest undelivered record older than this (the 120 s rule)",
            lo=1, hi=7 * 86400, unit="s"),
        Key("bad_rating", "bool", True, "each 差评 of today, so the hall can call back the same day"),
        Key("staff_bad_per_year", "int", 2, "a staff member with this many 差评 in the calendar year",
            lo=1, hi=1000),
        Key("window_bad_share", "number", 0.05, "a window whose 差评 share of this month's ratings exceeds this"
            " (0.05 = 5%)", lo=0, hi=1, check=lambda v: v < 1, why="must be a fraction 0..1 (0.05 = 5%)"),
        Key("low_invite_ratio", "number", 0.5, "staff inviting fewer than this x the median of staff this month;"
            " 0 = never", lo=0, hi=1),
        Key("mqtt", "bool", True, "publish alerts when [mqtt] is configured"),
    ]),
    Table("pairing", "What `hcp tool pair` draws on each staff card (一码一账号).", [
        Key("url_template", "str", DEFAULT_URL_TEMPLATE, "the evaluation URL of the card's QR code: {staff_id}"
            " (required), {window}, {device_id} are filled in; upper-case alphanumeric URLs make the smallest"
            " codes", check=url_template_problem, commented=True,
            allowed="fields {staff_id} (required), {window}, {device_id}"),
    ]),
]

# [[upstream]]: every kind has these; the rest belongs to its forwarder.
UPSTREAM = Table("upstream", "Upstream targets, one [[upstream]] table each: every record goes to each target"
                 " once (its own outbox rows), marked delivered only when the target acknowledged it.", [
    Key("name", "str", _REQUIRED, "the target's name (outbox rows, status, metrics)", check=_name,
        allowed="1-32 of A-Z a-z 0-9 _ -"),
    Key("kind", "str", _REQUIRED, "its forwarder", choices=UPSTREAM_KINDS),
    Key("type", "str", None, "the old name of `kind`", choices=UPSTREAM_KINDS, commented=True,
        default_doc="none"),
    Key("enabled", "bool", True, "false: no records are queued for this target and it is not forwarded to;"
        " rows already queued wait", commented=True),
])
COMMON_KEYS = tuple(k.name for k in UPSTREAM.keys)

FORWARDERS = {
    "mqtt": Table("upstream.mqtt", "Records published to an MQTT broker, QoS 1, marked delivered on PUBACK"
                  " (gateway/forward/mqtt.py).", [
        Key("host", "str", _REQUIRED, "the broker's host name or address", example="127.0.0.1"),
        Key("port", "int", lambda v: 8883 if v.get("tls") else 1883, "the broker's port", lo=1, hi=65535,
            commented=True, example=1883, default_doc="1883, 8883 with tls"),
        Key("topic", "str", "hcp/records/{client_id}", "topic of the records; {client_id} and {name} are"
            " filled in (the platform subscribes to hcp/records/+)", check=_records_topic,
            allowed="no + or #; fields {client_id}, {name}"),
        Key("client_id", "str", None, "unique per gateway in a broker cluster (a second client with the same"
            " id kicks the first off)", check=lambda v: None if not set(v) & set("+#/") else
            "must not contain + # or /", commented=True, example="hcp-gw-hall-1-hall-broker", allowed="no + # /",
            default_doc="hcp-gw-<hall.id>-<name>"),
        Key("username", "str", None, "the gateway's user on this broker", commented=True, example="hcp-gateway",
            default_doc="none"),
        Key("password", "str", None, "its password (or password_file)", empty=True, secret=True, commented=True,
            example="...", default_doc="none"),
        Key("password_file", "str", None, "a file whose first line is the password", path=True, secret=True,
            reads="password", commented=True, example="upstream.password", default_doc="none"),
        _tls_key("true (the system's CAs) or { ca, cert, key, insecure }: CA file, client certificate and key"
                 " (mutual TLS), insecure = true skips the host-name check (tests only)"),
        Key("protocol", "str", "3.1.1", "MQTT version", choices=("3.1.1", "5"), commented=True),
        Key("keepalive", "int", 30, "MQTT keepalive", lo=5, hi=3600, unit="s", commented=True),
        Key("window", "int", 100, "messages in flight awaiting PUBACK", lo=1, hi=10000, commented=True),
        Key("batch", "int", 100, "records per message: 1 = one JSON object each, else JSON arrays of up to"
            " this many", lo=1, hi=1000, commented=True),
        Key("max_payload", "int", 262144, "bytes per message (records are packed up to it)", lo=1024,
            hi=256 * 1024 * 1024, unit="bytes", commented=True),
        Key("connect_timeout_s", "number", 10.0, "how long to wait for the broker's CONNACK", lo=0.1, hi=600,
            unit="s", commented=True),
    ] + _forwarder_common(), after=_mqtt_upstream_after, forwarder=True),
    "http": Table("upstream.http", "Records POSTed as JSON to an HTTP endpoint, marked delivered on 2xx"
                  " (gateway/forward/http.py).", [
        Key("url", "str", _REQUIRED, "http:// or https:// URL the records are POSTed to", check=_http_url,
            example="https://platform.example/api/evaluations", allowed="http:// or https:// URL with a host"),
        Key("token", "str", None, "sent as `Authorization: Bearer <token>`", secret=True, example="...",
            default_doc="none"),
        Key("headers", "headers", None, "extra request headers", commented=True, example={"X-Hall": "hall-1"},
            default_doc="none"),
        Key("timeout_s", "number", 10.0, "per request", lo=0.05, hi=600, unit="s", commented=True),
        Key("batch", "int", 100, "records per request: 1 = one JSON object each, else JSON arrays of up to"
            " this many", lo=1, hi=1000, commented=True),
        Key("max_body", "int", 1024 * 1024, "bytes per request body (records are packed up to it)", lo=1024,
            hi=256 * 1024 * 1024, unit="bytes", commented=True),
        _tls_key("for https: true (the system's CAs) or { ca, cert, key, insecure }"),
    ] + _forwarder_common(), after=_http_upstream_after, forwarder=True),
}


def table(name):
    """The declaration of [name] (or "upstream", "upstream.mqtt", "upstream.http")."""
    if name == "upstream":
        return UPSTREAM
    if name.startswith("upstream."):
        return FORWARDERS[name.split(".", 1)[1]]
    return next(t for t in TABLES if t.name == name)


def default(section, key):
    """The default of `[section] key`."""
    return copy.deepcopy(table(section).by_name[key].default)


# ---------------------------------------------------------------- the checker

def _num(x):
    return str(int(x)) if isinstance(x, float) and x.is_integer() else repr(x) if isinstance(x, float) else str(x)


def _range(key):
    if key.choices:
        return "one of %s" % ", ".join(json.dumps(c) for c in key.choices)
    if key.lo is None:
        return ""
    return "%s..%s%s" % (_num(key.lo), _num(key.hi), " " + key.unit if key.unit else "")


_WHAT = {"int": "an integer", "number": "a number", "bool": "true or false", "strings": "a list of strings",
         "headers": "a table of strings"}


def _what(key):
    if key.what:
        return key.what
    if key.kind == "str":
        return "a string" if key.empty else "a non-empty string"
    return _WHAT[key.kind]


def _type_ok(key, v):
    k = key.kind
    if k == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if k == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if k == "str":
        return isinstance(v, str) and (key.empty or v != "")
    if k == "bool":
        return isinstance(v, bool)
    if k == "strings":
        return isinstance(v, list) and all(isinstance(p, str) and p for p in v)
    return True  # the structured kinds check themselves


def _tls(v, err, base):
    """`tls`: true/false, or {ca, cert, key, insecure}; the files exist (paths
    relative to the config file). Returns the setting with its paths absolute."""
    if v is None or isinstance(v, bool):
        return v or None
    if not isinstance(v, dict):
        err("must be true/false or a table {ca, cert, key, insecure}")
        return None
    out = dict(v)
    for k in sorted(set(v) - {"ca", "cert", "key", "insecure"}):
        err("unknown key (allowed: ca, cert, insecure, key)", ".%s" % k)
    for k in ("ca", "cert", "key"):
        path = v.get(k)
        if path is None:
            continue
        if not isinstance(path, str) or not path:
            err("must be a file path", ".%s" % k)
            continue
        out[k] = path = os.path.join(base, path)
        if not os.path.isfile(path):
            err("file not found: %s" % path, ".%s" % k)
    if "key" in v and "cert" not in v:
        err("given without tls.cert", ".key")
    if v.get("insecure") is not None and not isinstance(v.get("insecure"), bool):
        err("must be true or false", ".insecure")
    return out


def _headers(v, err, base):
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        err("must be a table of strings")
    return v


def _reasons(raw, err, base):
    """[{code, label}, ...] -> [(code, label), ...]: codes unique, without
    commas, at most 255 bytes; at most MAX_REASONS."""
    if not isinstance(raw, list) or not raw:
        err("must be a non-empty list of {code, label} tables")
        return list(FALLBACK_REASONS)
    out, seen = [], set()
    for i, item in enumerate(raw):
        at = "[%d]" % i
        if not isinstance(item, dict) or not isinstance(item.get("code"), str) or not item.get("code"):
            err("must be a table with a non-empty string `code` (and a `label`)", at)
            continue
        code = item["code"]
        if code in seen:
            err("duplicate reason code %r" % code, at + ".code")
        if "," in code or len(code.encode()) > 255:
            err("must be at most 255 bytes without commas, got %r" % code, at + ".code")
        seen.add(code)
        label = item.get("label", code)
        if not isinstance(label, str):
            err("must be a string", at + ".label")
            label = code
        out.append((code, label))
    if len(out) > MAX_REASONS:
        err("at most %d reasons fit the device, got %d" % (MAX_REASONS, len(out)))
    return out


_STRUCTURED = {"tls": _tls, "headers": _headers, "reasons": _reasons}


class Problems(list):
    """The problems found, one line each: "key: what is wrong"."""

    def add(self, key, message):
        self.append("%s: %s" % (key, message))


def _check_value(t, key, v, full, problems, base):
    """The value of one given key, checked (problems added), converted."""
    if key.kind in _STRUCTURED:
        return _STRUCTURED[key.kind](v, lambda msg, sub="": problems.add(full + sub, msg), base)
    rng = _range(key)
    typed = "must be " + rng if key.choices else "must be %s%s" % (_what(key), " " + rng if rng else "")
    if not _type_ok(key, v):
        problems.add(full, typed)
        return None
    if key.kind == "number":
        v = float(v)
    bad = None
    if key.lo is not None and not key.lo <= v <= key.hi or key.choices and v not in key.choices:
        bad = key.why or (typed if t.forwarder else "must be " + rng)
    elif key.check is not None:
        verdict = key.check(v)
        if verdict is False:
            bad = key.why or typed
        elif isinstance(verdict, str):
            bad = verdict
    if bad:
        problems.add(full, bad)
        return None
    if key.path and v:
        v = os.path.join(base, v)
    return v


def _read_secret(path):
    """The first line of a secret file, stripped (OSError, UnicodeDecodeError)."""
    with open(path, encoding="utf-8") as f:
        return f.readline().strip()


def check_table(t, data, prefix, problems, base, extra=()):
    """Check one table's data; return (values, given): every key's value
    (the default when absent; None for a key whose value is wrong) and the
    names given. `extra`: names accepted besides the table's keys."""
    known = set(t.by_name) | set(extra)
    for k in data:
        if k not in known:
            problems.add("%s.%s" % (prefix, k), "unknown key (allowed: %s)" % ", ".join(sorted(known)))
    values, given = {}, set()
    for key in t.keys:
        full = "%s.%s" % (prefix, key.name)
        v = data.get(key.name)
        if v is None:  # absent (None: how a caller in Python leaves a key out)
            if key.required:
                problems.add(full, "required" if t.forwarder else "missing (required)")
            elif not callable(key.default) and not key.reads:
                values[key.name] = copy.deepcopy(key.default)
            continue
        given.add(key.name)
        values[key.name] = _check_value(t, key, v, full, problems, base)
    for key in t.keys:
        if key.reads and key.name in given:  # password_file -> password
            full = "%s.%s" % (prefix, key.name)
            if key.reads in given:
                problems.add(full, "give %s or %s, not both" % (key.reads, key.name))
            elif values[key.name] is not None:
                try:
                    values[key.reads] = _read_secret(values[key.name])
                except (OSError, UnicodeDecodeError) as err:
                    problems.add(full, "cannot read %s: %s" % (values[key.name], getattr(err, "strerror", None)
                                                               or err))
                given.add(key.reads)
            given.discard(key.name)
            del values[key.name]
    for key in t.keys:
        if callable(key.default) and key.name not in given:
            values[key.name] = key.default(values)
    if t.after is not None:
        t.after(values, given, lambda name, msg: problems.add("%s.%s" % (prefix, name), msg), base)
    return values, given


def _prefix(settings, prefix):
    name = settings.get("name") if isinstance(settings, dict) else None
    return prefix or ("upstream.%s" % name if isinstance(name, str) and name else "upstream")


def upstream_problems(kind, settings, prefix=None, base=None):
    """Problems of one [[upstream]] table of `kind` (its forwarder's keys,
    and name/kind/type/enabled), each naming its key under `prefix`
    (default "upstream.<name>")."""
    prefix = _prefix(settings, prefix)
    if not isinstance(settings, dict):
        return ["%s: must be a table" % prefix]
    problems = Problems()
    check_table(FORWARDERS[kind], settings, prefix, problems, base or os.getcwd(), extra=COMMON_KEYS)
    return list(problems)


def upstream_settings(kind, name, settings, base=None):
    """The settings a forwarder of `kind` runs on: the table checked, every
    key of its kind there, defaults filled in (password_file read into
    password; tls paths absolute). Raises ConfigError naming each problem:
    a forwarder never starts on settings the loader would refuse."""
    table_ = dict(settings or {})
    table_.setdefault("name", name)
    problems = Problems()
    prefix = _prefix(table_, None)
    values, _ = check_table(FORWARDERS[kind], table_, prefix, problems, base or os.getcwd(), extra=COMMON_KEYS)
    if problems:
        raise ConfigError("; ".join(problems))
    return values


def check_upstreams(raw, problems, base, derive=None):
    """[[upstream]]: [{"name", "kind", "enabled", "settings"}], where
    settings are the keys given (checked) for the forwarder; `derive(name,
    kind, settings)` adds what the loader derives (before the check)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("upstream", "must be an array of tables: [[upstream]]")
        return []
    out, names = [], set()
    for i, item in enumerate(raw):
        key = "upstream[%d]" % i
        if not isinstance(item, dict):
            problems.add(key, "must be a table")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.add(key + ".name", "must be 1-32 characters of A-Z a-z 0-9 _ -, got %r" % (name,))
            continue
        key = "upstream[%d] (%s)" % (i, name)
        if name in names:
            problems.add(key + ".name", "duplicate upstream name")
        names.add(name)
        kind = item.get("kind", item.get("type"))
        if kind not in UPSTREAM_KINDS:
            problems.add(key + ".kind", "must be one of %s, got %r" % (", ".join(UPSTREAM_KINDS), kind))
            continue
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.add(key + ".enabled", "must be true or false")
        settings = {k: v for k, v in item.items() if k not in COMMON_KEYS}
        if derive is not None:
            derive(name, kind, settings)
        values, given = check_table(FORWARDERS[kind], settings, "upstream.%s" % name, problems, base)
        out.append({"name": name, "kind": kind, "enabled": enabled is not False,
                    "settings": {k: values[k] for k in FORWARDERS[kind].by_name if k in given}})
    return out


def check(doc, base, derive=None):
    """Check a whole TOML document (a dict). Returns (values, problems):
    values[section] = {key: value} for each table (None for an optional
    table left out), values["upstream"] = check_upstreams(...), where
    derive(values, name, kind, settings) may add to an upstream's settings."""
    problems = Problems()
    known = [t.name for t in TABLES] + ["upstream"]
    for k in doc:
        if k not in known:
            problems.add(k, "unknown key (allowed: %s)" % ", ".join(sorted(known)))
    values = {}
    for t in TABLES:
        data = doc.get(t.name)
        if data is None and t.optional:
            values[t.name] = None
            continue
        if data is not None and not isinstance(data, dict):
            problems.add(t.name, "must be a table")
            data = None
        values[t.name], _ = check_table(t, data or {}, t.name, problems, base)
    values["upstream"] = check_upstreams(doc.get("upstream"), problems, base,
                                         derive and (lambda *a: derive(values, *a)))
    return values, problems


# ---------------------------------------------------------------- the init file

def _wrap(text, width=96, lead="# "):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(lead) + len(line) + 1 + len(w) > width:
            lines.append(lead + line)
            line = w
        else:
            line = (line + " " + w) if line else w
    if line:
        lines.append(lead + line)
    return lines


def _example_value(key, values):
    v = key.example if key.example is not None else key.default
    if callable(v):
        v = v(values)
    if v is _REQUIRED:
        v = None
    if isinstance(v, list) and key.kind == "reasons" and v and isinstance(v[0], tuple):
        v = [{"code": c, "label": label} for c, label in v]
    if v is None:
        raise ValueError("%s has neither an example nor a default" % key.name)
    return v


def _example_lines(t, values, comment_all=False):
    out = []
    for key in t.keys:
        v = _example_value(key, values)
        line = "%s = %s" % (key.name, tomlw.value(v))
        if comment_all or key.commented:
            line = "# " + line
        note = key.doc
        if _range(key):
            note += " (%s)" % _range(key)
        pad = max(30, len(line) + 2)
        out.append("%-*s# %s" % (pad, line, note))
    return out


def example_toml(token):
    """The commented config `hcp gateway init` writes: every key of every
    table, set or commented out, running as is with `token` as the API's."""
    values = {"token": token}
    out = ["# hcp hall gateway configuration (TOML). Written by `hcp gateway init`;",
           "# `hcp gateway run --config THIS_FILE` starts the gateway with it.",
           "# Relative paths are relative to this file. Every key is here, set or",
           "# commented out at its default; docs/config.md is the reference."]
    for t in TABLES:
        out.append("")
        if t.optional:  # left out as a whole: commented out as a whole
            out += _wrap(t.doc)
            out.append("# [%s]" % t.name)
        else:
            out.append("[%s]" % t.name)
            out += _wrap(t.doc)
        out += _example_lines(t, values, comment_all=t.optional)
    out.append("")
    out += _wrap(UPSTREAM.doc + " The keys besides name, kind, type and enabled belong to the forwarder"
                 " of its kind.")
    for kind, ft in FORWARDERS.items():
        out.append("")
        out += _wrap(ft.doc)
        out.append("# [[upstream]]")
        common = {"name": "province" if kind == "http" else "hall-broker", "kind": kind}
        for key in UPSTREAM.keys:
            v = common.get(key.name, key.example if key.example is not None else key.default)
            if key.name == "type":
                v = kind
            out.append("%-30s# %s" % ("# %s = %s" % (key.name, tomlw.value(v)), key.doc))
        out += _example_lines(ft, {}, comment_all=True)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the reference

_TYPE_NAMES = {"int": "integer", "number": "number", "str": "string", "bool": "true/false",
               "strings": "list of strings", "tls": "true/false or {ca, cert, key, insecure}",
               "headers": "table of strings", "reasons": "list of {code, label}"}


def _md(text):
    """A table cell: | escaped, and < > outside `code` (they would read as HTML)."""
    parts = str(text).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _md_rows(t):
    rows = ["| key | type | default | unit | allowed | what it is |", "|---|---|---|---|---|---|"]
    for key in t.keys:
        kind = _TYPE_NAMES[key.kind]
        flags = [f for f, on in (("path", key.path), ("secret", key.secret)) if on]
        if flags:
            kind += " (%s)" % ", ".join(flags)
        if key.required:
            dflt = "**required**"
        elif key.default_doc is not None:
            dflt = key.default_doc
        else:
            dflt = "`%s`" % tomlw.value(key.default)
        if key.allowed:
            allowed = key.allowed
        elif key.why:
            allowed = key.why.replace("must be ", "", 1)
        elif key.choices:
            allowed = ", ".join("`%s`" % tomlw.value(c) for c in key.choices)
        elif key.lo is not None:
            allowed = "%s..%s" % (_num(key.lo), _num(key.hi))
        else:
            allowed = ""
        doc = key.doc
        if key.reads:
            doc += " (instead of `%s`)" % key.reads
        rows.append("| `%s` | %s | %s | %s | %s | %s |" % (key.name, _md(kind), _md(dflt), _md(key.unit),
                                                          _md(allowed), _md(doc)))
    return rows


def reference_markdown():
    """docs/config.md: every key of every table, with its type, default,
    unit, range and doc."""
    out = ["# hall.toml: the gateway's configuration", "",
           "<!-- Generated from gateway/settings.py; do not edit. Regenerate with:",
           "     .venv/bin/python -m gateway.settings > docs/config.md -->", "",
           "Every key the gateway reads. `hcp gateway init` writes a commented file with all of",
           "them that runs as is; `hcp gateway check -c hall.toml` names each wrong key",
           "(`section.key: what is wrong`). Unknown keys are errors: a typo never falls back",
           "to a default. Paths are relative to the config file; keys marked secret are best",
           "kept in their own file (e.g. `password_file`), the config itself 0600."]
    for t in TABLES + [UPSTREAM] + list(FORWARDERS.values()):
        title = "[[upstream]]" if t is UPSTREAM else \
            "[[upstream]] kind = \"%s\"" % t.name.split(".")[1] if t.forwarder else "[%s]" % t.name
        out += ["", "## %s" % title, "", _md(t.doc + (" Optional: leave it out for none." if t.optional else "")),
                ""]
        out += _md_rows(t)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--example"]:
        import secrets

        sys.stdout.write(example_toml(secrets.token_urlsafe(24)))
    else:
        sys.stdout.write(reference_markdown())
