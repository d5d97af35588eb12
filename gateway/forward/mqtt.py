"""Forward outbox records to an MQTT broker, QoS 1, marked on PUBACK.

Settings: one `[[upstream]]` table with `kind = "mqtt"`; its keys, types,
ranges and defaults are declared in gateway/settings.py (docs/config.md),
and the forwarder runs on them checked, every key there. The topic: one per
gateway under a common prefix ("hcp/records/{client_id}") is what a
clustered broker wants: the platform subscribes to "hcp/records/+" (or,
with MQTT 5, to "$share/<group>/hcp/records/+" to scale its consumers out);
the client id is unique per gateway in the cluster (a second client with
the same id kicks the first off). With batch = 1 every message is one
record (a JSON object); otherwise every message is a JSON array of 1..batch
records (one while live, full arrays while draining a backlog), packed up
to max_payload.

How it works. One thread owns everything: the paho client (run with
`loop()` from this thread, so publishing happens on the network thread, right
when a PUBACK frees a slot, the fast path measured in docs/design.md §7), the
connection life cycle, and the SQLite connection. paho's own in-flight limit
is off (`max_inflight_messages = 0`, it walks its queue on every PUBACK); the
window is ours, far below the 65,535 message ids. A row is marked delivered
only after the PUBACK of the message that carried it; marks are committed in
batches. Reconnecting happens in exactly one place (`_run_loop`) with capped
backoff, and always with a fresh client: paho's queue of the old connection is
dropped and every row not PUBACKed is read again from the database and sent
again, in id order. Duplicates are fine: every record carries its
`idempotencyKey` and the upstream drops repeats.
"""

import json
import socket
import ssl
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as schema
from gateway.forward.base import ForwarderBase, ForwardError, ssl_context


def validate(settings, prefix=None):
    """Problems with an MQTT upstream table, each naming its key (the
    schema's check: gateway/settings.py)."""
    return schema.upstream_problems("mqtt", settings, prefix)


def default_client_id(name):
    host = socket.gethostname().split(".")[0] or "host"
    return "hcp-gw-%s-%s" % (host, name)


class _Disconnected(ForwardError):
    pass


class MqttForwarder(ForwarderBase):
    kind = "mqtt"

    def __init__(self, db_path, name, settings):
        super().__init__(db_path, name, settings)
        s = self.s = self.settings  # checked, every key there (gateway/settings.py)
        self.host = s["host"]
        self.tls = s["tls"]
        self.port = s["port"]
        self.client_id = s["client_id"] or default_client_id(name)
        self.topic = s["topic"].format(client_id=self.client_id, name=name)
        self.window = int(s["window"])
        self.batch = int(s["batch"])
        self.max_payload = int(s["max_payload"])
        self.read_chunk = max(2000, self.window * self.batch)
        self.client = None
        self._reset_session()
        self._set(topic=self.topic, client_id=self.client_id, inflight=0, queued=0)

    # -- session state
    def _reset_session(self):
        self._queue = deque()     # rows read, not yet published: (id, key, device, record)
        self._inflight = {}       # mid -> [row ids]
        self._cursor = 0          # highest row id read
        self._more = True         # the last read was full: there may be more
        self._link_error = None

    # -- thread
    def _run_loop(self):
        while not self._stopping.is_set():
            try:
                self.client = self._connect()
            except ForwardError as err:
                self._error(str(err))
                self.flush(force=True)
                self.housekeeping()
                self._sleep(self.backoff.next())
                continue
            connected_at = time.monotonic()
            try:
                self._session()
            except ForwardError as err:
                if not self._stopping.is_set():
                    self._error(str(err))
            finally:
                self._drop_client()
                self.flush(force=True)
                self._reset_session()
                self._set(connected=False, inflight=0, queued=0)
            if self._stopping.is_set():
                break
            if time.monotonic() - connected_at > 10.0:
                self.backoff.reset()
            self.housekeeping()
            self._sleep(self.backoff.next())

    def _new_client(self):
        v5 = self.s["protocol"] == "5"
        kw = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": self.client_id,
              "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kw["clean_session"] = True
        client = mqtt.Client(**kw)
        client.max_inflight_messages_set(0)   # our window, not paho's
        client.max_queued_messages_set(0)
        client.connect_timeout = float(self.s["connect_timeout_s"])
        if self.s["username"] is not None:
            client.username_pw_set(self.s["username"], self.s["password"])
        if self.tls:
            client.tls_set_context(ssl_context(self.tls))
            if isinstance(self.tls, dict) and self.tls.get("insecure"):
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _connect(self):
        """A fresh client, connected (CONNACK accepted), or ForwardError."""
        client = self._new_client()
        self._connack = None
        try:
            client.connect(self.host, self.port, keepalive=int(self.s["keepalive"]))
        except (OSError, ValueError, ssl.SSLError) as err:
            raise ForwardError("cannot connect to %s:%d: %s" % (self.host, self.port, err)) from err
        deadline = time.monotonic() + float(self.s["connect_timeout_s"])
        while self._connack is None:
            rc = client.loop(0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and self._connack is None:
                self._close(client)
                raise ForwardError("connection to %s:%d lost before CONNACK: %s"
                                   % (self.host, self.port, mqtt.error_string(rc)))
            if self._stopping.is_set() or time.monotonic() > deadline:
                self._close(client)
                raise ForwardError("no CONNACK from %s:%d" % (self.host, self.port))
        if self._connack.is_failure:
            self._close(client)
            raise ForwardError("broker %s:%d refused the connection: %s"
                               % (self.host, self.port, self._connack))
        self._set(connected=True)
        return client

    def _close(self, client):
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - best effort on a dying link
            pass
        try:
            client.socket() and client.socket().close()
        except Exception:  # noqa: BLE001
            pass

    def _drop_client(self):
        if self.client is not None:
            self._close(self.client)
            self.client = None

    def _session(self):
        """Send and collect PUBACKs until the link fails or we stop."""
        client = self.client
        last_poll = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            woken = self._woken.is_set()
            if woken:
                self._woken.clear()
            if (woken or self._more or now - last_poll >= self.poll_s) and \
                    len(self._queue) < self.read_chunk // 2:
                last_poll = now
                self._fill()
            self._pump()
            busy = bool(self._inflight or self._queue)
            rc = client.loop(0.005 if busy else min(0.05, self.poll_s))
            if self._link_error:
                raise _Disconnected(self._link_error)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise _Disconnected("link to %s:%d lost: %s" % (self.host, self.port, mqtt.error_string(rc)))
            self.flush()
            self.housekeeping()
            self._set(inflight=len(self._inflight), queued=len(self._queue))
        # stopping: give the last PUBACKs a moment, then leave
        deadline = time.monotonic() + 1.0
        while self._inflight and time.monotonic() < deadline:
            if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break

    def _fill(self):
        if not self._inflight and not self._queue:
            # idle: nothing of ours in flight, so every pending row is new or
            # was requeued by an admin - read from the start.
            self._cursor = 0
        rows, self._cursor, self._more = self.read_pending(self.read_chunk, self._cursor)
        self._queue.extend(rows)
        if not rows and not self._queue and not self._inflight:
            self._next_stats = 0.0  # idle now: refresh the backlog figures at once

    def _pump(self):
        """Publish while the window has room (also called from on_publish,
        i.e. on the network thread as soon as a PUBACK frees a slot)."""
        if self._link_error or self.marks_blocked():
            return
        q = self._queue
        while q and len(self._inflight) < self.window:
            if self.batch == 1:
                row = q.popleft()
                ids, payload = [row[0]], row[3].encode()
            else:
                ids, parts, size = [], [], 2
                while q and len(ids) < self.batch:
                    rec = q[0][3]
                    if parts and size + len(rec) + 1 > self.max_payload:
                        break
                    row = q.popleft()
                    ids.append(row[0])
                    parts.append(rec)
                    size += len(rec) + 1
                payload = ("[" + ",".join(parts) + "]").encode()
            info = self.client.publish(self.topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # not sent: the rows stay un-PUBACKed and are read again after reconnecting
                self._link_error = "publish failed: %s" % mqtt.error_string(info.rc)
                return
            self._inflight[info.mid] = ids
            self._count("sent", len(ids))

    # -- paho callbacks (run inside client.loop(), on this thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connack = reason_code

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._stopping.is_set():
            self._link_error = "disconnected by %s:%d: %s" % (self.host, self.port, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        ids = self._inflight.pop(mid, None)
        if ids is None:
            return
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            # MQTT 5 PUBACK with an error (not authorised, quota...): not
            # delivered; drop the link so everything is sent again after backoff.
            self._link_error = "broker refused a message: %s" % reason_code
            return
        self.ack(ids)
        self._pump()

    def status(self):
        st = super().status()
        st["target"] = "mqtt://%s:%d/%s" % (self.host, self.port, self.topic)
        return st


def payload_records(payload):
    """The records of one message: a JSON object or an array of them."""
    data = json.loads(payload)
    return data if isinstance(data, list) else [data]

