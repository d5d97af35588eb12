"""The gateway service: the coordinator that owns every part's lifecycle.

    Gateway(cfg).start()   open the database (migrate, next session), load
                           the registry, start the commit thread, forwarders,
                           serial and MQTT ingest, the health monitor, the API
    .stop()                stop them in reverse order (ingest first, so
                           nothing new arrives; then the commit thread drains
                           its queue; forwarders last)
    .run()                 start, wait for SIGTERM/SIGINT, stop

Connections: the commit thread has the one hot writer; invitations, pairing
and the health monitor have their own (each a few writes a minute, waiting
on the busy timeout if the writer holds the lock); forwarders open theirs.

Wiring: each part is made with what it needs, in the order of `_start`, and
is never patched afterwards. What a part reports (an alarm, a device that
came online, a refused invitation) goes to the part that acts on it, given
at construction; the one report that goes through this coordinator is a
device's change of state, which the MQTT ingest publishes but the router,
which the MQTT ingest feeds, notices (`_device_changed`).
"""

import logging
import signal
import threading
import time

from gateway.config import MAX_SIZE_MB
from gateway.devices.commands import Commands
from gateway.devices.health import Monitor
from gateway.devices.invitations import Invitations
from gateway.devices.pairing import Pairing
from gateway.devices.registry import Registry
from gateway.errors import GatewayError, InvalidRequest
from gateway.forward import kinds as forwarders
from gateway.ingest.mqtt import MqttIngest
from gateway.ingest.router import Router
from gateway.ingest.serial import SerialIngest
from gateway.store import db, outbox
from gateway.store.commit import Checkpointer, Committer
from gateway.web.api import Api
from gateway.web.dashboard import Dashboard

log = logging.getLogger("hcp.gateway")


class Gateway:
    def __init__(self, cfg):
        self.cfg = cfg
        self.started_at = None
        self.session = None
        self.registry = Registry()
        self.forwarders = {}
        self.commands = None
        self.router = None
        self.invitations = None
        self.pairing = None
        self.serial = None
        self.mqtt = None
        self.api = None
        self.monitor = None
        self.dashboard = None
        self.committer = None
        self.checkpointer = None
        self._conns = []
        self._stopped = threading.Event()

    # --- lifecycle ---------------------------------------------------------
    def _conn(self):
        c = db.connect(self.cfg.db_path)
        self._conns.append(c)
        return c

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()  # whatever started, stopped again
            raise

    def _start(self):
        cfg = self.cfg
        writer = db.open_db(cfg.db_path)
        self._conns.append(writer)
        self.session = db.next_session(writer)
        if cfg.max_size_mb:
            _cap(writer, cfg.max_size_mb)
        self.registry.load(writer)
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job
        self.checkpointer = Checkpointer(self._conn())
        self.started_at = time.time()
        # Made before it starts: its metrics take the commit thread's ACK latency.
        self.dashboard = Dashboard(self, self._conn())
        self.commands = Commands(self.registry, cfg, self.session, read_conn=self._conn())
        self.committer = Committer(writer, [u.name for u in cfg.upstreams], cfg.hall,
                                   send_ack=self.commands.send_ack, on_queued=self.wake_forwarders,
                                   linger_s=cfg.commit_window_ms / 1000.0, in_batch=self.registry.flush_replay,
                                   reasons=cfg.reason_codes, ack_latency=self.dashboard.metrics.ack_latency,
                                   on_alarm=self._alarm_changed)
        self.invitations = Invitations(self._conn(), self.registry, self.commands, cfg, self.session)
        self.pairing = Pairing(self._conn(), self.registry, self.commands)
        self.router = Router(self.registry, self.committer, self.commands, cfg, on_device=self._device_changed,
                             on_invite_refused=self.invitations.refused)
        self.committer.start()
        self.checkpointer.start()
        for up in cfg.upstreams:
            fw = forwarders.make(cfg.db_path, up)
            fw.start()
            self.forwarders[up.name] = fw
        if not cfg.upstreams:
            log.warning("no [[upstream]] configured: events are stored, no records are queued")
        if cfg.mqtt is not None:
            self.mqtt = MqttIngest(cfg.mqtt, cfg.hall.id, self.router, self.registry,
                                   cfg.mqtt.client_id or db.client_id(writer, "hcp-gw-%s" % cfg.hall.id))
            self.mqtt.start()
        self.monitor = Monitor(self.registry, cfg,
                               publish_device=self.mqtt.publish_device if self.mqtt else None,
                               publish_gateway=self.mqtt.publish_gateway if self.mqtt else None,
                               summary=self.summary, every_second=self._every_second)
        self.monitor.start()
        self.dashboard.start()
        self.serial = SerialIngest(cfg.serial, self.router)
        self.serial.start()
        try:
            self.api = Api(self, cfg.http_host, cfg.http_port, cfg.token)
        except OSError as err:
            raise GatewayError("cannot listen on %s:%d (http.listen): %s"
                               % (cfg.http_host, cfg.http_port, err.strerror or err)) from err
        self.api.start()
        log.info("gateway %s started: session %d, API on %s:%d, %d serial pattern(s), %d upstream(s)",
                 cfg.hall.id, self.session, cfg.http_host, self.api.port, len(cfg.serial.ports),
                 len(cfg.upstreams))
        return self

    def stop(self):
        if self._stopped.is_set():
            return
        self._stopped.set()
        for part in (self.api, self.serial, self.mqtt):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("stopping %s", type(part).__name__)
        if self.monitor is not None:
            self.monitor.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.committer is not None:
            self.committer.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        for name, fw in self.forwarders.items():
            try:
                fw.stop(timeout=5)
            except Exception:
                log.exception("stopping forwarder %s", name)
        for c in self._conns:
            try:
                c.close()
            except Exception:
                pass
        log.info("gateway stopped")

    def run(self):
        """Start, serve until SIGTERM/SIGINT, stop. Returns the exit code."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: done.set())
        self.start()
        try:
            while not done.wait(1.0):
                pass
        finally:
            self.stop()
        return 0

    # --- glue ----------------------------------------------------------------
    def _every_second(self):
        self.commands.resend_due()  # unconfirmed commands to devices
        self.invitations.expire_due()  # invitations nobody will answer

    def _device_changed(self, dev, what):
        """The router's report of a device online or with new health: the
        monitor publishes it (once it runs: the router may hear a device
        before; its next health tells again)."""
        if self.monitor is not None:
            self.monitor.device_changed(dev, what)

    def set_storage_cap(self, max_size_mb):
        """Cap the database size now (MB; 0 lifts the cap). A cap at or below
        the current size is a full disk: ACKs stop and the alarm rises, and
        lifting it recovers by itself. Runs in the commit thread, between
        batches. For admins who must keep a disk from filling, and for the
        simulator's disk-full fault."""
        # NaN fails every comparison, infinity and 1e308 the upper bound:
        # a cap SQLite's max_page_count (pages, u32) can hold, or a 400.
        if (isinstance(max_size_mb, bool) or not isinstance(max_size_mb, (int, float))
                or not 0 <= max_size_mb <= MAX_SIZE_MB):
            raise InvalidRequest("max_size_mb must be a number 0..%d (MB; 0: no cap)" % MAX_SIZE_MB)
        self.committer.control(lambda conn: _cap(conn, max_size_mb))
        return {"max_size_mb": max_size_mb}

    def wake_forwarders(self):
        for fw in self.forwarders.values():
            fw.wake()

    def _alarm_changed(self, alarm):
        if self.mqtt is not None:
            try:
                self.mqtt.publish_gateway(self.summary())
            except Exception:
                log.exception("publishing alarm")

    def summary(self):
        """The small state published on MQTT."""
        return {"hall": self.cfg.hall.id, "session": self.session, "alarm": self.committer.alarm,
                "devices": len(self.registry.devices),
                "online": sum(1 for d in self.registry.all() if d.online)}

    def status(self):
        fw = {}
        for name, f in self.forwarders.items():
            try:
                fw[name] = f.status()
            except Exception as err:
                fw[name] = {"error": str(err)}
        with self.invitations.lock:
            ob = outbox.stats(self.invitations.conn)
        return {
            "hall": self.cfg.hall.id,
            "session": self.session,
            "started_at": self.started_at,
            "alarm": self.committer.alarm,
            "ingest": dict(self.committer.stats, queued=self.committer.q.qsize()),
            "rejected": dict(self.registry.rejected),
            "device_errors": dict(self.router.device_errors),
            "devices": len(self.registry.devices),
            "online": sum(1 for d in self.registry.all() if d.online),
            "serial": self.serial.status() if self.serial else [],
            "mqtt": self.mqtt.status() if self.mqtt else None,
            "outbox": ob,
            "invitations_today": self.invitations.counts(),
            "forwarders": fw,
        }


def _cap(conn, max_size_mb):
    # SQLite never sets max_page_count below the file's current size.
    if not max_size_mb:
        conn.execute("PRAGMA max_page_count = 4294967294")
        return
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA max_page_count = %d" % max(1, int(max_size_mb * 1024 * 1024 // page)))
