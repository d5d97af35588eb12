"""The upstream receiver: a stand-in for the provincial platform that stores
every record that really arrived, so tests and the simulator can count what
the gateway delivered (duplicates included).

    python -m simulator.upstream http --port P --db FILE [--token T]
    python -m simulator.upstream mqtt --port BROKER_PORT --topic T --db FILE
    python -m simulator.upstream summary --db FILE

Both receivers print one JSON line `{"ready": true, ...}` on stdout once they
take records, and store each record as one row of `arrivals` in a SQLite
file (WAL), in arrival order, before acknowledging it (HTTP 2xx / MQTT
PUBACK): a record the receiver acknowledged is in the file.

HTTP. `POST` to any path but /control with a JSON object (one record) or a
JSON array of records. 200 with `{"stored": n}`. The `Idempotency-Key` header
is stored next to each record. Control, by `POST /control` with a JSON object
(the fields given replace the current ones; `{}` resets nothing):
    {"refuse_for_s": 3}        answer 503 to everything for 3 s
    {"hang_for_s": 3, "hang_store": true}
                               do not answer for 3 s (the client times out);
                               with hang_store the records are stored first,
                               as a platform that processed them and then hung
    {"reject": {"field": "projectNo", "pattern": "^BAD", "status": 422}}
                               a request holding any record whose field
                               matches the regex gets that 4xx and a reason
    {"reject": null}           stop rejecting
    {"reset": true}            back to normal
`GET /summary` answers the summary; `GET /health` answers 200.

MQTT. A QoS 1 subscriber with a persistent session (clean_session=False, a
client id fixed by the database path unless given), so a restarted receiver
gets what the broker queued meanwhile. It subscribes again on every connect
(a broker restarted without persistence has forgotten the session). Payloads
are one record (object) or an array of records.

The summary counts records (`received`), distinct idempotency keys
(`unique`), `duplicates` (received - unique), unique records per kind
(`rating` / `unrated`, by the record's `rated` field), distinct events per
kind (`events`: a batch rating is one event with several case records), and
requests/messages without an idempotency key.
"""

import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

SCHEMA = """
CREATE TABLE IF NOT EXISTS arrivals (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,            -- Unix time of arrival
    via TEXT NOT NULL,           -- http | mqtt
    msg INTEGER NOT NULL,        -- request/message number: records of one batch share it
    key TEXT,                    -- the record's idempotencyKey
    header_key TEXT,             -- HTTP Idempotency-Key header of the request
    event_id TEXT,
    device_id TEXT,
    rated INTEGER,
    record TEXT NOT NULL         -- the record as received, JSON
);
CREATE INDEX IF NOT EXISTS arrivals_key ON arrivals (key);
"""


def open_store(path):
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def parse(body):
    """The records of one request/message body (object or array)."""
    data = json.loads(body)
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    raise ValueError("expected a JSON object or an array of objects")


class Store:
    """Arrivals in one SQLite file; thread-safe."""

    def __init__(self, path):
        self.conn = open_store(path)
        self.lock = threading.Lock()
        row = self.conn.execute("SELECT max(msg) FROM arrivals").fetchone()
        self.msg = row[0] or 0

    def add(self, records, via, header_key=None):
        now = time.time()
        with self.lock:
            self.msg += 1
            rows = [(now, via, self.msg, r.get("idempotencyKey"), header_key, r.get("eventId"),
                     r.get("deviceId"), None if r.get("rated") is None else int(bool(r.get("rated"))),
                     json.dumps(r, ensure_ascii=False, separators=(",", ":"))) for r in records]
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO arrivals (at, via, msg, key, header_key, event_id, device_id, rated, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.conn.execute("COMMIT")
        return len(rows)


def _conn(db):
    return db if isinstance(db, sqlite3.Connection) else open_store(db)


def summary(db):
    """Counts over a receiver's database (a path or an open connection)."""
    conn = _conn(db)
    q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    received = q("SELECT count(*) FROM arrivals")
    unique = q("SELECT count(DISTINCT key) FROM arrivals WHERE key IS NOT NULL")
    kinds, events = {"rating": 0, "unrated": 0}, {"rating": 0, "unrated": 0}
    for rated, n_keys, n_events in conn.execute(
            "SELECT rated, count(DISTINCT key), count(DISTINCT event_id) FROM arrivals"
            " WHERE key IS NOT NULL GROUP BY rated"):
        kind = "unrated" if rated == 0 else "rating"
        kinds[kind] += n_keys
        events[kind] += n_events
    return {
        "received": received,
        "unique": unique,
        "duplicates": received - unique,
        "kinds": kinds,
        "events": events,
        "messages": q("SELECT count(DISTINCT msg) FROM arrivals"),
        "without_key": q("SELECT count(*) FROM arrivals WHERE key IS NULL"),
        "requests_without_header_key": q(
            "SELECT count(DISTINCT msg) FROM arrivals WHERE via = 'http' AND header_key IS NULL"),
    }


def records(db):
    """Every record received, in arrival order, duplicates included (dicts)."""
    conn = _conn(db)
    return [json.loads(r[0]) for r in conn.execute("SELECT record FROM arrivals ORDER BY id")]


def arrivals(db):
    """[(msg, key, header_key, device_id, record dict), ...] in arrival order."""
    conn = _conn(db)
    return [(m, k, h, d, json.loads(r)) for m, k, h, d, r in conn.execute(
        "SELECT msg, key, header_key, device_id, record FROM arrivals ORDER BY id")]


# ---------------------------------------------------------------- HTTP

class Control:
    """The receiver's switchable behaviour (refuse / hang / reject)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.refuse_until = 0.0
        self.hang_until = 0.0
        self.hang_store = False
        self.reject = None  # (field, compiled regex, status)

    def update(self, cmd):
        now = time.monotonic()
        with self.lock:
            if cmd.get("reset"):
                self.reset()
            if "refuse_for_s" in cmd:
                self.refuse_until = now + float(cmd["refuse_for_s"])
            if "hang_for_s" in cmd:
                self.hang_until = now + float(cmd["hang_for_s"])
                self.hang_store = bool(cmd.get("hang_store", False))
            if "reject" in cmd:
                r = cmd["reject"]
                self.reject = None if not r else (
                    r["field"], re.compile(r["pattern"]), int(r.get("status", 422)))
            return self.describe()

    def describe(self):
        now = time.monotonic()
        return {"refusing_s": max(0.0, self.refuse_until - now),
                "hanging_s": max(0.0, self.hang_until - now),
                "reject": None if not self.reject else
                {"field": self.reject[0], "pattern": self.reject[1].pattern, "status": self.reject[2]}}


def make_http_server(port, db_path, token=None, host="127.0.0.1"):
    store = Store(db_path)
    control = Control()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def log_message(self, fmt, *args):  # quiet
            pass

        def _reply(self, status, obj):
            body = json.dumps(obj, ensure_ascii=False).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True

        def do_GET(self):
            if self.path == "/summary":
                with store.lock:
                    self._reply(200, summary(store.conn))
            elif self.path == "/health":
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path == "/control":
                try:
                    self._reply(200, control.update(json.loads(body or b"{}")))
                except (ValueError, KeyError, TypeError, re.error) as err:
                    self._reply(400, {"error": "bad control: %s" % err})
                return
            if token is not None and self.headers.get("Authorization") != "Bearer " + token:
                self._reply(401, {"error": "bad or missing token"})
                return
            now = time.monotonic()
            with control.lock:
                refusing = now < control.refuse_until
                hang_until, hang_store = control.hang_until, control.hang_store
                reject = control.reject
            if refusing:
                self._reply(503, {"error": "refusing (outage switched on)"})
                return
            try:
                recs = parse(body)
            except ValueError as err:
                self._reply(400, {"error": "bad body: %s" % err})
                return
            if now < hang_until:
                if hang_store:
                    store.add(recs, "http", self.headers.get("Idempotency-Key"))
                time.sleep(max(0.0, hang_until - time.monotonic()))
                self.close_connection = True
                self._reply(503, {"error": "was hanging"})
                return
            if reject is not None:
                field, rx, status = reject
                bad = [r.get("idempotencyKey") for r in recs if rx.search(str(r.get(field, "")))]
                if bad:
                    self._reply(status, {"error": "rejected: %s matches %s" % (field, rx.pattern),
                                         "keys": bad})
                    return
            n = store.add(recs, "http", self.headers.get("Idempotency-Key"))
            self._reply(200, {"stored": n})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.store = store
    server.control = control
    return server


# ---------------------------------------------------------------- MQTT

def run_mqtt(port, topic, db_path, client_id=None, host="127.0.0.1", qos=1, username=None,
             password=None, on_ready=None, stop=None, ca=None):
    """Subscribe and store until `stop` (a threading.Event) is set, forever if None."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    store = Store(db_path)
    if client_id is None:
        client_id = "hcp-receiver-" + hashlib.sha1(os.path.abspath(str(db_path)).encode()).hexdigest()[:12]
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False)
    client.max_inflight_messages_set(0)
    if username:
        client.username_pw_set(username, password)
    if ca:  # a hall broker set up by `hcp gateway broker-config`
        client.tls_set(ca_certs=ca)
    client.reconnect_delay_set(0.1, 2.0)
    ready = {"done": False}

    def on_connect(c, userdata, flags, rc, props):
        if not rc.is_failure:
            c.subscribe(topic, qos=qos)

    def on_subscribe(c, userdata, mid, rcs, props):
        if not ready["done"]:
            ready["done"] = True
            if on_ready:
                on_ready({"ready": True, "via": "mqtt", "client_id": client_id, "topic": topic})

    def on_message(c, userdata, msg):
        try:
            recs = parse(msg.payload)
        except ValueError:
            recs = [{"unparsable": msg.payload.decode("utf-8", "replace")}]
        store.add(recs, "mqtt")  # stored before paho sends the PUBACK

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    waiter = stop or threading.Event()
    while True:  # the broker may not be up yet
        try:
            client.connect(host, port, keepalive=30)
            break
        except OSError:
            if waiter.wait(0.2):
                return
    client.loop_start()
    try:
        waiter.wait()
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------- CLI

def _print_ready(info):
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


@click.group()
def cli():
    """Upstream receiver for tests and the simulator."""


@cli.command()
@click.option("--port", type=int, required=True)
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--token", default=None, help="require Authorization: Bearer TOKEN")
def http(port, db_path, host, token):
    """An HTTP endpoint that stores every record it receives."""
    server = make_http_server(port, db_path, token=token, host=host)
    _print_ready({"ready": True, "via": "http", "port": server.server_address[1]})
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--port", type=int, required=True, help="the broker's port")
@click.option("--topic", required=True, help="topic filter, e.g. hcp/records/#")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--client-id", default=None, help="default: fixed by the database path")
@click.option("--username", default=None)
@click.option("--password-file", type=click.File("r"), default=None,
              help="the password in a file (not on the command line, where others can read it)")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS: the broker's CA")
def mqtt(port, topic, db_path, host, client_id, username, password_file, ca):
    """A QoS 1 subscriber with a persistent session that stores every record."""
    try:
        run_mqtt(port, topic, db_path, client_id=client_id, host=host, username=username,
                 password=password_file.readline().strip() if password_file else None,
                 on_ready=_print_ready, ca=ca)
    except KeyboardInterrupt:
        pass


@cli.command("summary")
@click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False))
def summary_cmd(db_path):
    """Print the counts of a receiver's database as JSON."""
    click.echo(json.dumps(summary(db_path), indent=1))


if __name__ == "__main__":
    cli()
