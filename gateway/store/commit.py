"""The commit thread: group commit of everything ingest produced, then ACKs.

Readers (serial, MQTT) put items on one queue and go back to reading. This
thread takes whatever has arrived, writes it all in ONE `BEGIN IMMEDIATE ...
COMMIT` (events, their upstream records as outbox rows for every target,
invitation closings, registry updates), and only after the commit returns
(`synchronous=FULL`: fsync'd) sends the ACKs, one `ack` frame per device
naming all its events of the batch. Under load the batches grow by
themselves: while one commit runs, the next batch queues up.

A write that fails (disk full, read-only file, I/O error) rolls the batch
back and raises the storage alarm: nothing of it is ACKed, so the devices
keep the events in their journals and resend them. The thread then probes
the database every few seconds and clears the alarm when writes work again.
"""

import json
import logging
import queue
import sqlite3
import threading
import time

from gateway import records
from gateway.records import event_id, valid_reasons
from gateway.store import outbox
from gateway.store.manyrows import insert_many, update_many

log = logging.getLogger("hcp.gateway.store.commit")

MAX_BATCH = 5000  # items per transaction
MAX_QUEUE = 200_000  # items waiting; beyond this new events are dropped (devices resend)
PROBE_EVERY_S = 2.0


class Event:
    """One event message as it waits for the commit."""

    __slots__ = ("msg", "dev", "received_at", "press_time", "time_source")

    def __init__(self, msg, dev, received_at, press_time, time_source):
        self.msg = msg
        self.dev = dev
        self.received_at = received_at
        self.press_time = press_time
        self.time_source = time_source


class Control:
    """fn(conn) to run in the commit thread outside any transaction (PRAGMAs:
    the database cap, tests' read-only switch)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class Committer(threading.Thread):
    """conn: the writer connection (owned by this thread from start()).
    targets: names of the upstream targets (one outbox row each per record).
    hall: config.Hall. send_ack(dev, ids): called after each commit.
    on_queued(): called after a commit that queued outbox rows.
    in_batch(conn): called inside every batch's transaction, after its
    items (the registry's replay states: gateway/devices/registry.py).
    ack_latency: a metrics.Histogram (frame received -> ACK written), or None.
    on_alarm(alarm_or_None): called on every change of the storage alarm."""

    def __init__(self, conn, targets, hall, send_ack, on_queued=None, linger_s=0.0, in_batch=None,
                 reasons=None, ack_latency=None, on_alarm=None):
        super().__init__(name="hcp-commit", daemon=True)
        self.conn = conn
        self.targets = list(targets)
        self.hall = hall
        self.send_ack = send_ack
        self.on_queued = on_queued or (lambda: None)
        self.linger_s = linger_s
        self.in_batch = in_batch
        # The 差评 reason catalogue ([device] reasons): only its codes are kept
        # and forwarded (records.valid_reasons); None keeps what devices send.
        self.reasons = frozenset(reasons) if reasons is not None else None
        self.q = queue.SimpleQueue()
        self._halt = threading.Event()
        self.alarm = None  # None, or {"since": ts, "error": text}
        self.stats = {"batches": 0, "events": 0, "duplicates": 0, "records": 0, "acked": 0,
                      "failed_batches": 0, "dropped": 0, "orphans": 0, "late": 0, "uninvited": 0, "poison": 0,
                      "reasons_dropped": 0}
        self.on_alarm = on_alarm
        self.ack_latency = ack_latency

    # --- producers ---------------------------------------------------------
    def put_event(self, ev):
        if self.q.qsize() >= MAX_QUEUE:
            self.stats["dropped"] += 1
            return False
        self.q.put(ev)
        return True

    def call(self, fn):
        """Run fn(conn) inside the next transaction (registry updates)."""
        self.q.put(fn)

    def control(self, fn):
        """Run fn(conn) in this thread before the next batch, outside a transaction."""
        self.q.put(Control(fn))

    def stop(self, timeout=5.0):
        self._halt.set()
        self.q.put(None)
        if self.is_alive():
            self.join(timeout)

    # --- the thread --------------------------------------------------------
    def run(self):
        while not self._halt.is_set():
            try:
                first = self.q.get(timeout=PROBE_EVERY_S if self.alarm else 0.5)
            except queue.Empty:
                if self.alarm:
                    self._probe()
                continue
            if first is None:
                break
            batch = [first]
            if self.linger_s:
                time.sleep(self.linger_s)
            while len(batch) < MAX_BATCH:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._halt.set()
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception:  # the thread must outlive any bug: log, drop the batch (devices resend)
                log.exception("commit thread: batch of %d dropped", len(batch))
                self._rollback()

    DAMAGED = "database damaged: restart the gateway to check it; restore a backup"

    @staticmethod
    def _is_damage(err):
        """SQLITE_CORRUPT / SQLITE_NOTADB (by code where Python gives it, else
        by SQLite's message): pages are damaged, not a passing condition."""
        if not isinstance(err, sqlite3.DatabaseError):
            return False
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in (getattr(sqlite3, "SQLITE_CORRUPT", 11),
                                                       getattr(sqlite3, "SQLITE_NOTADB", 26)):
            return True
        text = str(err).lower()
        return "malformed" in text or "corrupt" in text or "not a database" in text

    def _set_alarm(self, err):
        """Raise the storage alarm (or note its new error). Damaged pages keep
        it raised until a restart (the start-up check then refuses the file
        or lets a repaired one run): the probe writes one small table and
        would clear it while the events' pages are still damaged, and every
        batch would raise it again."""
        if self.alarm is not None and self.alarm.get("damaged"):
            return  # said once; nothing clears it
        if self._is_damage(err):
            first = self.alarm is None
            error = "%s (%s)" % (self.DAMAGED, err)
            if first:
                self.alarm = {"since": time.time(), "error": error, "damaged": True}
            else:
                self.alarm.update(error=error, damaged=True)
            log.error("storage alarm: %s; events are acknowledged only if their writes work", error)
            self._alarm_changed()
            return
        if self.alarm is None:
            self.alarm = {"since": time.time(), "error": str(err)}
            log.error("storage alarm: %s; not acknowledging events until writes work again", err)
            self._alarm_changed()
        else:
            self.alarm["error"] = str(err)

    def _alarm_changed(self):
        if self.on_alarm is not None:
            self.on_alarm(self.alarm)

    def _clear_alarm(self):
        if self.alarm is not None and not self.alarm.get("damaged"):
            log.warning("storage alarm cleared after %.1f s", time.time() - self.alarm["since"])
            self.alarm = None
            self._alarm_changed()

    def _probe(self):
        if self.alarm is not None and self.alarm.get("damaged"):
            return  # a write that works proves nothing of the damaged pages
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?)",
                              (repr(time.time()),))
            self.conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            self._set_alarm(err)
            return
        self._clear_alarm()

    def _rollback(self):
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _commit(self, batch):
        conn = self.conn
        if any(isinstance(item, Control) for item in batch):
            for item in batch:
                if isinstance(item, Control):
                    try:
                        item.fn(conn)
                    except Exception:
                        log.exception("control in the commit thread")
            batch = [item for item in batch if not isinstance(item, Control)]
            if not batch:
                return
        acks = {}  # dev -> [(boot, seq)]
        received = []  # receive times, for the ACK latency
        rows = []  # outbox rows of the whole batch: one outbox.add
        counts = {"events": 0, "duplicates": 0, "records": 0, "orphans": 0, "late": 0, "uninvited": 0,
                  "poison": 0, "reasons_dropped": 0}
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            events = []
            for item in batch:
                if type(item) is Event:
                    events.append(item)
                    m = item.msg
                    ids = acks.get(item.dev)
                    if ids is None:
                        ids = acks[item.dev] = []
                    ids.append((m["boot"], m["event_seq"]))
                    received.append(item.received_at)
                else:  # registry updates: devices rows only, so their place among the events is free
                    try:
                        item(conn)
                    except sqlite3.Error:
                        raise
                    except Exception:  # a bug in a registry update must not cost the events
                        log.exception("registry update in the commit thread")
            if events:
                self._events(conn, events, counts, rows)
            queued = outbox.add(conn, rows) if rows else 0
            if self.in_batch is not None:
                self.in_batch(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            self.stats["failed_batches"] += 1
            self._set_alarm(err)
            return
        if conn.total_changes > changes:  # a batch that wrote nothing proves nothing
            self._clear_alarm()
        self.stats["batches"] += 1
        for k, v in counts.items():
            self.stats[k] += v
        # Durable now: tell the devices.
        for dev, ids in acks.items():
            try:
                self.send_ack(dev, ids)
                self.stats["acked"] += len(ids)
            except Exception:  # a dead port must not stop the commit thread
                log.exception("sending ack to %s", dev.device_id)
        if self.ack_latency is not None and received:
            self.ack_latency.observe_since(received, time.time())
        if queued:
            try:
                self.on_queued()
            except Exception:
                log.exception("waking forwarders")

    def _events(self, conn, events, counts, out):
        """Store the events of a batch, in order; append their outbox rows to
        `out`. A handful of statements per batch, not three per event:

        1. their invitations, one SELECT (`json_each` of the ids, the rows
           packed into one JSON array: `_invitations`);
        2. the events, `INSERT OR IGNORE` in multi-row statements
           (`manyrows.insert_many`); the UNIQUE event_id
           absorbs resends, and the rows this batch really added are those
           with an id above the largest before it (only this thread writes
           events), so a duplicate is known without a statement per event;
        3. records for the new events that answer an open invitation (the
           first answer wins, within the batch too; their JSON text by
           `records.texts`), their invitations closed by `manyrows.update_many`.
        Each of these is one SQLite step per up to 256 rows: the sqlite3
        module releases the GIL for a step and must take it back after it,
        which costs a wait behind the serial thread every time.
        The outcome is the one of storing the events one by one."""
        eids = []
        wanted = set()
        for item in events:
            m = item.msg
            eids.append(event_id(m["device_id"], m["boot"], m["event_seq"]))
            if m["kind"] != "uninvited":
                wanted.add(m["invitation"])
        invs = _invitations(conn, wanted) if wanted else {}
        catalogue = self.reasons
        rows = []
        found = []  # the invitation row each event answers, or None
        for item, eid in zip(events, eids, strict=True):
            m = item.msg
            inv = None
            if m["kind"] != "uninvited":
                inv = invs.get(m["invitation"])
                if inv is not None and inv[INV_DEVICE] != m["device_id"]:
                    inv = None  # another device's invitation: never this one's to answer
            found.append(inv)
            if inv is not None:  # the invitation's staff and window, as they were when it was opened
                staff_id, window = inv[INV_STAFF], inv[INV_WINDOW]
            else:
                binding = item.dev.binding or {}
                staff_id, window = binding.get("staff_id", ""), binding.get("window", "")
            reasons = m["reasons"]
            if reasons and catalogue is not None:
                reasons, dropped = valid_reasons(m["kind"], m["score"], reasons, catalogue)
                counts["reasons_dropped"] += dropped
            # in the order of EVENT_COLUMNS
            rows.append((eid, m["device_id"], m["boot"], m["event_seq"], m["kind"], m["score"],
                         ",".join(reasons), m["invitation"], m["time"], m["uptime_ms"], item.press_time,
                         item.received_at, staff_id, window, item.time_source))
        top = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        before = conn.total_changes
        insert_many(conn, _INSERT_EVENTS, len(EVENT_COLUMNS), rows)
        if conn.total_changes - before == len(rows):
            added = None  # every one new: the common case
        else:
            added = {r[0] for r in conn.execute("SELECT event_id FROM events WHERE id > ?", (top,))}
        answered = {}  # invitation id -> event id, closed in this batch
        closing = []
        hall = self.hall
        targets = self.targets
        texts = records.texts
        loads = json.loads
        for item, row, inv in zip(events, rows, found, strict=True):
            (eid, device_id, _boot, _seq, kind, score, reasons, inv_id, _time, _uptime, press_time, received,
             _staff, _window, _source) = row
            dev = item.dev
            if added is not None:
                if eid not in added:
                    counts["duplicates"] += 1
                    dev.duplicates += 1
                    continue
                added.discard(eid)  # a second copy in the same batch is a duplicate
            counts["events"] += 1
            dev.events += 1
            if kind == "uninvited":
                counts["uninvited"] += 1
                continue  # audit only
            if inv is None:
                counts["orphans"] += 1
                log.warning("event %s answers unknown invitation %r: stored, not forwarded", eid, inv_id)
                continue
            _id, _device, inv_staff, inv_window, inv_cases, inv_answer = inv
            first = inv_answer if inv_answer is not None else answered.get(inv_id)
            if first is not None:
                counts["late"] += 1  # 一次一评: the first complete answer counted
                log.warning("event %s: invitation %s already answered by %s", eid, inv_id, first)
                continue
            try:  # the invitation's staff and window, as when it was opened
                built = texts(eid, device_id, kind, score, reasons, press_time, loads(inv_cases), inv_staff,
                              inv_window, hall)
            except Exception:  # a bug or a bad row: the event is stored (and ACKed), loudly
                counts["poison"] += 1
                log.exception("event %s stored, but its records could not be built", eid)
                continue
            answered[inv_id] = eid
            closing.append(("rated" if kind == "rating" else "unrated", eid, received, inv_id))
            counts["records"] += len(built)
            for key, text in built:
                for t in targets:
                    out.append((t, key, eid, device_id, text, received))
        if closing:  # each invitation once (`answered`)
            update_many(conn, "invitations", ("state", "event_id", "closed_at"), "id", closing)


# An events row as _events builds it, column by column.
EVENT_COLUMNS = ("event_id", "device_id", "boot", "event_seq", "kind", "score", "reasons", "invitation",
                 "device_time", "uptime_ms", "press_time", "received_at", "staff_id", "window", "time_source")
_INSERT_EVENTS = "INSERT OR IGNORE INTO events (%s)" % ", ".join(EVENT_COLUMNS)

_INVITATIONS = "SELECT %s FROM invitations WHERE id IN (SELECT value FROM json_each(?))"
# An invitation row as _invitations gives it, and the places of its fields.
INV_COLUMNS = ("id", "device_id", "staff_id", "window", "cases", "event_id")
INV_DEVICE, INV_STAFF, INV_WINDOW = (INV_COLUMNS.index(c) for c in ("device_id", "staff_id", "window"))
_INV_COLS = ", ".join(INV_COLUMNS)


def _invitations(conn, ids):
    """{id: (id, device_id, staff_id, window, cases, event_id)} of the
    invitations named in `ids`, in one step: SQLite packs the rows into one
    JSON array (the sqlite3 module would release and take back the GIL for
    every row fetched). Every column is TEXT (or NULL), which JSON carries
    as it is; a row JSON cannot hold (a BLOB someone wrote) makes SQLite
    refuse the statement, and then the rows are fetched one by one."""
    arg = (json.dumps(list(ids)),)
    try:
        packed = conn.execute(_INVITATIONS % ("json_group_array(json_array(%s))" % _INV_COLS), arg).fetchone()[0]
        return {row[0]: tuple(row) for row in json.loads(packed)}
    except sqlite3.OperationalError:
        return {row[0]: row for row in conn.execute(_INVITATIONS % _INV_COLS, arg)}


class Checkpointer(threading.Thread):
    """WAL checkpoints off the hot path. The writer connection runs with
    `wal_autocheckpoint = 0`, so no commit ever pays for copying the WAL back
    into the database (a checkpoint in the commit path stalls ACKs by tens of
    ms, docs/design.md §7: commit p99 18 ms at checkpoints); this thread, on its own
    connection, runs PASSIVE checkpoints (they never block the writer) every
    `every_s`, and a TRUNCATE one at stop."""

    def __init__(self, conn, every_s=0.5):
        super().__init__(name="hcp-checkpoint", daemon=True)
        self.conn = conn
        self.every_s = every_s
        self._halt = threading.Event()
        self.runs = 0
        self.errors = 0

    def run(self):
        while not self._halt.wait(self.every_s):
            self.checkpoint("PASSIVE")

    def checkpoint(self, mode):
        try:
            self.conn.execute("PRAGMA wal_checkpoint(%s)" % mode).fetchone()
            self.runs += 1
        except sqlite3.Error as err:  # busy, full disk: the next round retries
            self.errors += 1
            log.debug("checkpoint: %s", err)

    def stop(self, timeout=5.0):
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
