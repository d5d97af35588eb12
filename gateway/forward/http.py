"""Forward outbox records to an HTTP endpoint as JSON.

Settings: one `[[upstream]]` table with `kind = "http"`; its keys, types,
ranges and defaults are declared in gateway/settings.py (docs/config.md),
and the forwarder runs on them checked, every key there. With batch = 1 the
body is one record (a JSON object); otherwise it is a JSON array of
1..batch records (one while live, full arrays while draining a backlog),
packed up to max_body.

Every record is the JSON stored in its outbox row: the provincial field names
of docs/design.md §1, with its `idempotencyKey` in the body. The request also
carries an `Idempotency-Key` header: the record's key for a single record;
for an array, "batch-" and a SHA-256 digest of the keys it carries (so a
resent identical batch carries the same header); the body keeps each
record's own key.

Outcomes, per request:
  2xx          delivered: the rows are marked (batched marks)
  400, 409, 410, 413, 415, 422 and other 4xx not listed below
               the request is refused for good. A single record is marked
               rejected with the status and the reason the upstream gave; an
               array is resent one record per request to find the guilty ones,
               so a bad record never blocks the rows behind it
  401, 403, 404, 405, 407, 408, 429
               about the gateway's credentials, URL or rate, not the record:
               retried with backoff (Retry-After honoured up to the cap), and
               shown in status()["last_error"] for an admin
  5xx, 3xx (redirects are not followed), timeouts, refused or reset connections
               retried with capped backoff; the same rows are retried first,
               so FIFO (and per-device) order holds

One request is in flight at a time, on one kept-alive connection: order is
trivially kept, and a full array per request is what makes a backlog drain
fast (see forward_common.py on FIFO and starvation).
"""

import hashlib
import http.client
import socket
import time
import urllib.parse
from collections import deque

from gateway import settings as schema
from gateway.forward.base import ForwarderBase, ForwardError, ssl_context
from gateway.store import outbox

RETRY_4XX = {401, 403, 404, 405, 407, 408, 429}
REASON_MAX = 500


def validate(settings, prefix=None):
    """Problems with an HTTP upstream table, each naming its key (the
    schema's check: gateway/settings.py)."""
    return schema.upstream_problems("http", settings, prefix)


class _Transient(ForwardError):
    """Retry later (connection trouble, 5xx, rate limits)."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after
        self.remaining = None  # rows still to settle; None = all of the attempt


class HttpForwarder(ForwarderBase):
    kind = "http"

    def __init__(self, db_path, name, settings):
        super().__init__(db_path, name, settings)
        s = self.s = self.settings  # checked, every key there (gateway/settings.py)
        self.url = s["url"]
        u = urllib.parse.urlsplit(self.url)
        self.https = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.https else 80)
        self.path = (u.path or "/") + ("?" + u.query if u.query else "")
        self.batch = int(s["batch"])
        self.max_body = int(s["max_body"])
        self.timeout = float(s["timeout_s"])
        self.headers = {"Content-Type": "application/json; charset=utf-8",
                        "User-Agent": "hcp-gateway", **(s["headers"] or {})}
        if s["token"]:
            self.headers["Authorization"] = "Bearer " + s["token"]
        self.read_chunk = max(1000, 10 * self.batch)
        self._http = None
        self._queue = deque()
        self._cursor = 0
        self._more = True
        self._set(target=self.url, inflight=0, queued=0)

    # -- connection
    def _conn(self):
        if self._http is None:
            if self.https:
                self._http = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=ssl_context(self.s["tls"]))
            else:
                self._http = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._http.connect()
            # small writes must not wait for a delayed ACK (Nagle)
            self._http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._http

    def _drop(self):
        if self._http is not None:
            try:
                self._http.close()
            except OSError:
                pass
            self._http = None
        self._set(connected=False)

    def post(self, rows):
        """POST rows; return (status, reason text) for an answer about the
        records (2xx or a final 4xx). Raises _Transient for anything else."""
        if self.batch == 1:
            body, key = rows[0][3], rows[0][1]
        else:
            body = "[" + ",".join(r[3] for r in rows) + "]"
            key = rows[0][1] if len(rows) == 1 else \
                "batch-" + hashlib.sha256("\n".join(r[1] for r in rows).encode()).hexdigest()[:32]
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        try:
            conn = self._conn()
            conn.request("POST", self.path, body=body.encode(), headers=headers)
            resp = conn.getresponse()
            text = resp.read(64 * 1024).decode("utf-8", "replace")
            status = resp.status
            retry_after = resp.getheader("Retry-After")
            if resp.will_close:
                self._drop()
        except (OSError, http.client.HTTPException) as err:  # timeouts, refused, reset, TLS
            self._drop()
            raise _Transient("POST %s: %s" % (self.url, str(err) or type(err).__name__)) from err
        self._set(connected=True)
        if 200 <= status < 300:
            return status, text
        if not 400 <= status < 500 or status in RETRY_4XX:  # 1xx/3xx/5xx: not about the records
            try:
                ra = float(retry_after) if retry_after else None
            except ValueError:
                ra = None
            raise _Transient("POST %s: HTTP %d %s" % (self.url, status, text[:200].strip()), ra)
        return status, text

    # -- thread
    def _run_loop(self):
        # (re)started: forget what was read, the database is the truth
        self._queue.clear()
        self._cursor = 0
        self._more = True
        last_poll = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            woken = self._woken.is_set()
            if woken:
                self._woken.clear()
            if len(self._queue) < self.read_chunk // 2 and \
                    (woken or self._more or now - last_poll >= self.poll_s):
                last_poll = now
                self._fill()
            self.flush()
            self.housekeeping()
            self._set(queued=len(self._queue))
            if not self._queue:
                self._woken.wait(self.poll_s)
                continue
            if self.marks_blocked():
                self._sleep(0.1)
                continue
            rows = self._take()
            try:
                self._deliver(rows)
            except _Transient as err:
                # the unsettled rows go back to the head, in order, and we wait
                back = rows if err.remaining is None else err.remaining
                self._queue.extendleft(reversed(back))
                self._error(str(err))
                self.write(outbox.note_failure, [r[0] for r in back], str(err)[:REASON_MAX])
                self.flush(force=True)
                delay = self.backoff.next()
                if err.retry_after is not None:
                    delay = min(max(delay, err.retry_after), self.backoff.maximum)
                self._sleep(delay)
                continue
            self.backoff.reset()
        self._drop()

    def _fill(self):
        if not self._queue:
            self._cursor = 0  # nothing held: read from the start (requeued rows too)
        rows, self._cursor, self._more = self.read_pending(self.read_chunk, self._cursor)
        self._queue.extend(rows)
        if not rows and not self._queue:
            self._next_stats = 0.0  # idle now: refresh the backlog figures at once

    def _take(self):
        q = self._queue
        first = q.popleft()
        rows, size = [first], len(first[3]) + 2
        while q and len(rows) < self.batch and size + len(q[0][3]) + 1 <= self.max_body:
            size += len(q[0][3]) + 1
            rows.append(q.popleft())
        return rows

    def _deliver(self, rows):
        """Deliver rows, or raise _Transient naming the rows still unsettled."""
        status, text = self.post(rows)
        if 200 <= status < 300:
            self._count("sent", len(rows))
            self.ack([r[0] for r in rows])
            return
        if len(rows) == 1:
            self._reject(rows[0], status, text)
            return
        # an array was refused for good: find the guilty records one by one,
        # so a bad record never blocks the rows behind it.
        for i, row in enumerate(rows):
            try:
                status, text = self.post([row])
                if 200 <= status < 300:
                    self._count("sent", 1)
                    self.ack([row[0]])
                else:
                    self._reject(row, status, text)
            except _Transient as err:
                err.remaining = rows[i:]
                raise

    def _reject(self, row, status, text):
        reason = ("HTTP %d: %s" % (status, " ".join(text.split())))[:REASON_MAX]
        self.flush(force=True)
        ok, _ = self.write(outbox.mark_rejected, row[0], reason)
        if not ok:
            raise _Transient("cannot record the rejection of %s" % row[1])
        self._count("rejected")
        self._error("record %s rejected: %s" % (row[1], reason), count=False)
