"""What the upstream forwarders share: the thread and its status, capped
backoff, batched delivery bookkeeping, retention. Their settings (keys,
types, ranges, defaults) are declared in gateway/settings.py: a forwarder
runs on `settings.upstream_settings(kind, name, table)`, the table checked
and its defaults filled in.

A forwarder owns one thread and one SQLite connection. It reads pending
outbox rows of its target in id order (FIFO: per-device order is kept because
a device's rows are queued in order), sends them, and marks them delivered
only when the upstream acknowledged them. The marks are batched (one
transaction for many acknowledgements: a commit per row would cap near
6.8k/s, docs/design.md §7); a crash between acknowledgement and mark only means the
row is sent again, and the idempotency key in every record lets the upstream
drop it.

FIFO and "drain without starving new events": we keep one strict FIFO lane.
A new event waits behind the backlog, but the backlog is sent as several
records per message/request (`batch`), so it drains tens of thousands of
rows per second while a hall produces at most a few events per second: a
new event waits at most backlog / drain rate (1,000,000 rows in <= 60 s,
docs/design.md §5), it is never starved, and no device's records can overtake
each other. A second "fresh" lane would only help devices with nothing in
the backlog and would cost per-device bookkeeping; we chose not to.
"""

import logging
import sqlite3
import threading
import time

from gateway.backoff import Backoff
from gateway.errors import GatewayError
from gateway.settings import upstream_settings
from gateway.store import db, outbox

log = logging.getLogger(__name__)

BUG_LOG_S = 60.0  # a failing loop's traceback: once per message this often at most


class ForwardError(GatewayError):
    """A delivery attempt failed in a way that is retried (link down, 5xx, timeout)."""


class Rate:
    """Rows per second over roughly the last `span` seconds. add() is on the
    per-message path: it samples the clock at most every 0.1 s."""

    def __init__(self, span=5.0):
        self.span = span
        self.marks = []  # (monotonic, cumulative count)
        self.total = 0
        self.next_mark = 0.0

    def add(self, n, now=None):
        self.total += n
        now = time.monotonic() if now is None else now
        if now >= self.next_mark:
            self.next_mark = now + 0.1
            self.marks.append((now, self.total))
            while len(self.marks) > 2 and now - self.marks[1][0] > self.span:
                self.marks.pop(0)

    def value(self, now=None):
        now = time.monotonic() if now is None else now
        marks = list(self.marks)
        if len(marks) < 2 or now - marks[-1][0] > self.span:
            return 0.0
        (t0, c0), (t1, c1) = marks[0], marks[-1]
        return (c1 - c0) / max(t1 - t0, 1e-3)


# ---------------------------------------------------------------- TLS

def ssl_context(tls):
    """The ssl.SSLContext of a `tls` setting (true: the system's CAs; or
    {ca, cert, key, insecure}), for every TLS client of the gateway: MQTT
    ingest, MQTT and HTTP forwarders. TLS 1.2 at the least."""
    import ssl

    t = tls if isinstance(tls, dict) else {}
    ctx = ssl.create_default_context(cafile=t.get("ca"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if t.get("cert"):
        ctx.load_cert_chain(t["cert"], t.get("key"))
    if t.get("insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- base

class ForwarderBase:
    """Thread, wake-up, stop, status, batched marks and retention. Subclasses
    implement `_run_loop()` (called in the thread with self.conn open) and may
    extend `status()`."""

    kind = "?"
    FLUSH_ROWS = 2000      # mark delivered when this many acks are waiting...
    FLUSH_AGE_S = 0.05     # ...or the oldest has waited this long
    MAX_UNFLUSHED = 200000  # stop sending while the database refuses marks
    STATS_EVERY_S = 1.0

    def __init__(self, db_path, name, settings):
        self.db_path = str(db_path)
        self.name = name
        # checked and filled in from the schema (ConfigError naming each problem)
        self.settings = s = upstream_settings(self.kind, name, settings)
        self.conn = None
        self._thread = None
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._lock = threading.Lock()
        self.backoff = Backoff(s["backoff_min_s"], s["backoff_max_s"])
        self.retention_s = s["retention_days"] * 86400.0
        self.purge_every_s = s["purge_every_s"]
        self.poll_s = s["poll_s"]
        # bookkeeping (thread-owned)
        self._acked = []
        self._acked_since = None
        self._next_purge = 0.0
        self._next_stats = 0.0
        self._rate = Rate()
        # status (read by other threads under _lock)
        self._st = {"connected": False, "delivered": 0, "rejected": 0, "errors": 0, "sent": 0,
                    "backlog": None, "oldest_pending_age_s": 0.0, "last_error": None,
                    "purged": 0, "running": False}
        self._oldest_created = None

    # -- interface for the coordinator
    def start(self):
        if self._thread is not None:
            raise GatewayError("forwarder %s already started" % self.name)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._main, name="forward-%s" % self.name, daemon=True)
        self._thread.start()
        return self

    def wake(self):
        self._woken.set()

    def stop(self, timeout=5):
        self._stopping.set()
        self._woken.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if not t.is_alive():
                self._thread = None
        return self._thread is None

    def status(self):
        with self._lock:
            st = dict(self._st)
        st["name"] = self.name
        st["kind"] = self.kind
        st["rate"] = round(self._rate.value(), 1)
        if self._oldest_created is not None:
            st["oldest_pending_age_s"] = max(0.0, time.time() - self._oldest_created)
        return st

    # -- helpers for subclasses
    def _set(self, **kw):
        with self._lock:
            self._st.update(kw)

    def _count(self, key, n=1):
        # only the forwarder's thread writes counters; an int store into an
        # existing key is atomic under the GIL, and status() copies under
        # the lock, so the per-message path takes no lock
        self._st[key] += n

    def _error(self, message, count=True):
        with self._lock:
            self._st["last_error"] = message
            if count:
                self._st["errors"] += 1
        log.warning("upstream %s: %s", self.name, message)

    def _sleep(self, seconds):
        """Wait, interruptibly by stop(); True if stopping."""
        return self._stopping.wait(seconds)

    def _main(self):
        """Supervise the loop: a failure nobody planned for (the database
        missing, locked or damaged, a bug) is shown in status(), and the loop
        starts again after a capped backoff - the thread never dies silently.
        The log says it once, not at every retry: a database error
        (sqlite3.Error, GatewayError) in one line when its message changes,
        or when it comes back after the loop delivered again; anything else
        (a bug) with its traceback, at most once per message per BUG_LOG_S."""
        self._set(running=True)
        last = None  # (message, delivered + rejected then) of the last failure logged
        bugs = {}  # message -> when its traceback was logged
        try:
            while not self._stopping.is_set():
                try:
                    if self.conn is None:
                        self.conn = db.connect(self.db_path)
                    self._run_loop()
                except Exception as err:  # noqa: BLE001 - see docstring
                    msg = "forwarder loop failed: %s" % err
                    with self._lock:
                        self._st["last_error"] = msg
                        self._st["errors"] += 1
                        moved = self._st["delivered"] + self._st["rejected"]
                    if isinstance(err, (sqlite3.Error, GatewayError)):
                        if last is None or last[0] != msg or last[1] != moved:
                            log.warning("upstream %s: %s; retrying with backoff (logged again when it changes)",
                                        self.name, msg)
                        last = (msg, moved)
                    else:
                        now = time.monotonic()
                        for m in [m for m, t in bugs.items() if now - t >= BUG_LOG_S]:
                            del bugs[m]
                        if msg not in bugs:
                            bugs[msg] = now
                            log.exception("upstream %s: %s (logged once a minute at most while it repeats)",
                                          self.name, msg)
                    self._sleep(self.backoff.next())
        finally:
            try:
                if self.conn is not None:
                    self.flush(force=True)
                    self.conn.close()
            except Exception as err:  # noqa: BLE001 - closing after a failure
                log.warning("upstream %s: closing: %s", self.name, err)
            self.conn = None
            self._set(running=False, connected=False)

    def read_pending(self, limit, after_id):
        """(rows, last id read, full) - pending rows after `after_id`, without
        those acknowledged but not yet marked; `full` if the read hit `limit`
        (there may be more)."""
        rows = outbox.pending(self.conn, self.name, limit, after_id)
        full = len(rows) >= limit
        last = rows[-1][0] if rows else after_id
        if self._acked and rows:
            acked = set(self._acked)
            rows = [r for r in rows if r[0] not in acked]
        return rows, last, full

    def ack(self, ids):
        """The upstream acknowledged these rows: mark them (batched)."""
        if not ids:
            return
        if self._acked_since is None:
            self._acked_since = time.monotonic()
        self._acked.extend(ids)
        self._rate.add(len(ids))
        self._count("delivered", len(ids))

    def flush(self, force=False):
        """Commit the waiting delivered-marks if enough or old enough (or force)."""
        if not self._acked:
            return True
        if not force and len(self._acked) < self.FLUSH_ROWS and \
                time.monotonic() - self._acked_since < self.FLUSH_AGE_S:
            return True
        ids = self._acked
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                outbox.mark_delivered(self.conn, ids)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:  # disk full, locked, damaged: retried next time
            self._error("cannot mark %d rows delivered: %s" % (len(ids), err))
            self._acked_since = time.monotonic()
            return False
        self._acked = []
        self._acked_since = None
        return True

    def marks_blocked(self):
        return len(self._acked) >= self.MAX_UNFLUSHED

    def write(self, fn, *args):
        """Run one outbox write in its own transaction; (True, its result),
        or (False, None) with the error noted if the database refused."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self.conn, *args)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            self._error("database write failed: %s" % err)
            return False, None
        return True, result

    def housekeeping(self, now=None):
        """Refresh backlog figures about once a second; purge old delivered
        rows every purge_every_s."""
        now = time.monotonic() if now is None else now
        if now >= self._next_stats:
            self._next_stats = now + self.STATS_EVERY_S
            try:
                count, oldest = outbox.backlog(self.conn, self.name)
            except sqlite3.Error as err:  # a status read must not kill the loop
                self._error("cannot read backlog: %s" % err, count=False)
            else:
                self._oldest_created = oldest
                self._set(backlog=count)
        if now >= self._next_purge:
            self._next_purge = now + self.purge_every_s
            self.purge()

    def purge(self):
        cutoff = time.time() - self.retention_s
        total = 0
        while not self._stopping.is_set():
            ok, n = self.write(outbox.purge_delivered, cutoff, self.name, 5000)
            if not ok:
                break
            total += n
            if n < 5000:
                break
        if total:
            self._count("purged", total)
        return total

    def _run_loop(self):  # pragma: no cover - abstract
        raise NotImplementedError
