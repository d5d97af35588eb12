"""Opening the gateway database and migrating its schema.

The database is one SQLite file in WAL mode with `synchronous=FULL`: a commit
returns only after the WAL is fsync'd, which is what lets the gateway say
"durable" when it ACKs an event. Connections are in autocommit mode
(isolation_level=None) and every write names its transaction explicitly
(`BEGIN IMMEDIATE ... COMMIT`), so there is never an implicit one open.

Migrations are a list of (name, statements). Each is applied in one
transaction together with its row in `migrations`, so a crash leaves either
none or all of it. Add new ones at the end; never edit an applied one.

The file holds the device keys: a new database is made 0600 under a temporary
name and linked into place (SQLite gives its -wal and -shm the main file's
mode), and `open_db` sets an existing one readable by others to 0600, with a
warning. `open_db` is also the gateway's start: it refuses an empty file (an
existing file of zero bytes is a lost database, not a new one: starting on it
would forget every key and binding) and one that fails `PRAGMA quick_check`,
with one line naming the file and how to recover. The check reads the whole
file, about 1.3 s (6 s from a cold cache) for an 800 MB database of 1,000,000
events with their invitations and outbox rows; it stops at CHECK_BUDGET_S
and the gateway then starts with a warning that the file was not checked in
full.
"""

import logging
import os
import secrets
import sqlite3
import stat
import time

from gateway.errors import StorageError
from gateway.store import outbox

log = logging.getLogger("hcp.gateway.store.db")

CHECK_BUDGET_S = 10.0  # PRAGMA quick_check at start: longer, and the rest goes unchecked


class DatabaseDamaged(StorageError):
    """The database file is empty or fails its integrity check: the gateway
    does not start on it."""


def _recovery(path):
    return ("restore %s from a backup, or move it (with its -wal and -shm files) away to start a fresh hall"
            " (every device must then be paired again)" % path)

MIGRATIONS = [
    ("0001-initial", [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # Every event a device sent, once (event_id UNIQUE absorbs retransmits).
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,       -- device_id:boot:event_seq
            device_id TEXT NOT NULL,
            boot INTEGER NOT NULL,
            event_seq INTEGER NOT NULL,
            kind TEXT NOT NULL,                  -- rating | unrated | uninvited
            score INTEGER NOT NULL,
            reasons TEXT NOT NULL DEFAULT '',    -- comma-separated codes
            invitation TEXT NOT NULL DEFAULT '',
            device_time INTEGER NOT NULL DEFAULT 0,
            uptime_ms INTEGER NOT NULL DEFAULT 0,
            press_time REAL,                     -- corrected time of the press (Unix s)
            received_at REAL NOT NULL,
            staff_id TEXT NOT NULL DEFAULT '',
            window TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX events_device ON events (device_id, id)",
        *outbox.SCHEMA,
    ]),
    ("0002-registry-invitations", [
        # How the press time was found: device clock, corrected from uptime, or receipt.
        "ALTER TABLE events ADD COLUMN time_source TEXT NOT NULL DEFAULT 'device'",
        # Every device the gateway has heard of, its key and its last health.
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            first_seen REAL,
            last_seen REAL,
            fw TEXT NOT NULL DEFAULT '',
            board TEXT NOT NULL DEFAULT '',
            boot INTEGER NOT NULL DEFAULT 0,
            reported_staff TEXT NOT NULL DEFAULT '',   -- staff id the device says it holds
            transport TEXT NOT NULL DEFAULT '',        -- serial:<path> | mqtt
            health TEXT NOT NULL DEFAULT '{}',         -- last health message, JSON
            clock_offset_s REAL,                       -- device clock - gateway clock
            key BLOB,                                  -- 32-byte device key (NULL: never paired)
            prev_key BLOB,                             -- key the device may still hold while a re-key is pending
            key_confirmed INTEGER NOT NULL DEFAULT 0   -- a frame tagged with `key` was seen
        )""",
        # 一码一账号: one device per staff account, one device per window, enforced here.
        """CREATE TABLE bindings (
            device_id TEXT PRIMARY KEY REFERENCES devices (device_id),
            staff_id TEXT NOT NULL UNIQUE,
            window TEXT NOT NULL UNIQUE,
            staff_name TEXT NOT NULL DEFAULT '',
            bound_at REAL NOT NULL
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            action TEXT NOT NULL,                 -- bind | unbind | replace | refuse
            device_id TEXT NOT NULL DEFAULT '',
            staff_id TEXT NOT NULL DEFAULT '',
            window TEXT NOT NULL DEFAULT '',
            actor TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE invitations (
            id TEXT PRIMARY KEY,
            window TEXT NOT NULL,
            device_id TEXT NOT NULL,
            staff_id TEXT NOT NULL,
            cases TEXT NOT NULL,                  -- JSON list of case objects (projectNo, ...)
            timeout_s INTEGER NOT NULL,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'open',   -- open | rated | unrated | cancelled | refused
            event_id TEXT,                        -- the event that closed it
            closed_at REAL
        )""",
        "CREATE INDEX invitations_open ON invitations (device_id) WHERE state = 'open'",
        # Screen bitmaps a device should hold (card, prompts, reason labels).
        """CREATE TABLE bitmaps (
            device_id TEXT NOT NULL,
            slot INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (device_id, slot)
        )""",
    ]),
    ("0003-alerts", [
        # Alerts raised and cleared (gateway/web/alerts.py): since survives a restart,
        # and retained MQTT alert topics are cleared even if the clearing happened
        # while the gateway was down.
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY,                  -- rule/subject
            rule TEXT NOT NULL,
            severity TEXT NOT NULL,
            since REAL NOT NULL,
            cleared_at REAL,                      -- NULL while active
            detail TEXT NOT NULL                  -- the alert, JSON
        )""",
    ]),
    ("0004-outbox-rejected-index", [
        # Counting and listing rejected rows (status, dashboard) without a scan.
        "CREATE INDEX outbox_rejected ON outbox (target, id) WHERE state = 2",
    ]),
    ("0005-invitations-open-by-time", [
        # The open invitations in the order they were opened, not by device:
        # closing one deletes its entry, and invitations close roughly in the
        # order they opened, so a commit closing hundreds of them (one per
        # window and batch) dirties a few leaf pages of this index instead of
        # one per device (≈ 95 of the ≈ 575 WAL pages a 400-event commit
        # wrote with 100 devices, docs/benchmarks.md). The expiry sweep
        # (state = 'open', by created_at + timeout) still reads only open ones.
        "DROP INDEX invitations_open",
        "CREATE INDEX invitations_open ON invitations (created_at) WHERE state = 'open'",
    ]),
    ("0006-invitations-by-time", [
        # Today's invitations by state (status, the dashboard's "no answer")
        # without reading the whole table. created_at never changes, and a new
        # invitation's entry goes at the right edge: one page per insert,
        # nothing when the commit thread closes an invitation.
        "CREATE INDEX invitations_created ON invitations (created_at)",
    ]),
    ("0007-provisioned-keys-replay", [
        # The replay guard survives a restart: the last accepted (session, seq)
        # of each device, written with the commit thread's batches.
        "ALTER TABLE devices ADD COLUMN replay_session INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE devices ADD COLUMN replay_seq INTEGER NOT NULL DEFAULT 0",
        # Keys are provisioned over the USB cable now (docs/link.md "Keys"): a key
        # that was ever sent in a `bind` frame crossed the line in clear and is
        # void. Those devices must be provisioned again.
        "UPDATE devices SET key = NULL, prev_key = NULL, key_confirmed = 0",
    ]),
]


def _create(path):
    """Make the database file at `path`, 0600, if there is none: SQLite would
    make it 0644 (less the umask). It is made whole under a temporary name
    (header written, WAL mode) and linked into place, so `path` is never an
    empty file, not even for a moment or after a crash."""
    if os.path.exists(path):
        return
    tmp = "%s.new-%d" % (path, os.getpid())
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover of the same name
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # writes page 1
        finally:
            conn.close()
        try:
            os.link(tmp, path)  # never over a file someone made meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not os.path.exists(path):
                os.rename(tmp, path)
    except (OSError, sqlite3.Error) as err:
        raise StorageError("cannot create database %s: %s"
                           % (path, getattr(err, "strerror", None) or err)) from err
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            try:
                os.unlink(leftover)
            except OSError:
                pass


def _refuse_empty(path):
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # SQLite says what is wrong
    if size == 0:
        raise DatabaseDamaged("database %s is an empty file (0 bytes), not a gateway database: starting on it"
                              " would lose every device key and binding; %s" % (path, _recovery(path)))


def connect(path, timeout=10.0):
    """A connection with the gateway's pragmas. Does not migrate. Makes the
    file (0600) if there is none; refuses an empty one."""
    path = str(path)
    _create(path)
    _refuse_empty(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as err:
        raise StorageError("cannot open database %s: %s" % (path, err)) from err
    return conn


def migrate(conn):
    """Apply the migrations not yet recorded; return the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def open_db(path):
    """Connect, check and migrate: what the gateway (at its start) and the
    tools call. Raises DatabaseDamaged for an empty or damaged file."""
    path = str(path)
    conn = connect(path)
    try:
        _tighten(path)
        check(conn, path)
        migrate(conn)
    except sqlite3.Error as err:
        conn.close()
        raise StorageError("cannot migrate database %s: %s" % (path, err)) from err
    except BaseException:
        conn.close()
        raise
    return conn


def _tighten(path):
    """The database, its -wal and -shm to 0600 if others may read them (they
    hold the device keys): one warning saying so, or that it cannot be done."""
    loose = []
    for name in (path, path + "-wal", path + "-shm"):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            loose.append((name, mode))
    if not loose:
        return
    failed = []
    for name, mode in loose:
        try:
            os.chmod(name, mode & 0o700 | 0o600)
        except OSError as err:
            failed.append("%s: %s" % (os.path.basename(name), err.strerror or err))
    modes = ", ".join("%s %04o" % (os.path.basename(n), m) for n, m in loose)
    if failed:
        log.warning("database %s holds the device keys and is readable by other users (%s); cannot set it to"
                    " 0600 (%s): chmod 600 it", path, modes, "; ".join(failed))
    else:
        log.warning("database %s holds the device keys and was readable by other users (%s): set to 0600",
                    path, modes)


def check(conn, path, budget_s=None):
    """PRAGMA quick_check: raise DatabaseDamaged unless it says "ok". Stops
    after `budget_s` (default CHECK_BUDGET_S) with a warning and returns
    False: a very large file starts not fully checked rather than late."""
    budget_s = CHECK_BUDGET_S if budget_s is None else budget_s
    start = time.monotonic()
    over = []

    def past_budget():
        if time.monotonic() - start > budget_s:
            over.append(True)
            return 1
        return 0

    conn.set_progress_handler(past_budget, 1000)
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as err:
        if over:
            log.warning("database %s (%d MB) not checked in full: PRAGMA quick_check stopped after %.1f s",
                        path, os.path.getsize(path) // 2**20, time.monotonic() - start)
            return False
        raise DatabaseDamaged("database %s is damaged (%s): %s" % (path, err, _recovery(path))) from err
    finally:
        conn.set_progress_handler(None, 0)
    took = time.monotonic() - start
    problems = [" ".join(str(r[0]).split()) for r in rows]
    if problems != ["ok"]:
        more = " (and more)" if len(problems) > 1 else ""
        raise DatabaseDamaged("database %s is damaged (PRAGMA quick_check: %s%s): %s"
                              % (path, problems[0], more, _recovery(path)))
    if took > 1.0:
        log.info("database %s: PRAGMA quick_check ok in %.1f s", path, took)
    return True


def client_id(conn, prefix):
    """`prefix-<16 hex digits>`, made once and kept in `meta`: a client id
    that survives restarts (a persistent MQTT session) and that nobody can
    guess (to take that session over)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'mqtt_client_id'").fetchone()
    if row is not None and row[0].startswith(prefix + "-"):
        return row[0]
    value = "%s-%s" % (prefix, secrets.token_hex(8))
    with conn:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('mqtt_client_id', ?)", (value,))
    return value


def next_session(conn):
    """Increment and return the gateway's persisted start counter (its frame
    session, docs/link.md)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'session'").fetchone()
        session = (int(row[0]) if row else 0) + 1
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('session', ?)", (str(session),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return session
