"""Health: devices go offline after missed heartbeats; state is published; old
delivered outbox rows are purged.

One thread, ticking once a second:
- a device not heard for `offline_after_missed` x `heartbeat_s` is offline
  (docs/link.md: 3 missed heartbeats by default);
- every device change (online, health, offline) is published to the retained
  MQTT state/availability topics when an ingest broker is configured;
- the gateway's own state is republished every `STATE_EVERY_S`.
Retention of delivered outbox rows belongs to each forwarder (its own
`retention_days`, defaulting to `[database] retention_days`).
"""

import logging
import threading
import time

log = logging.getLogger("hcp.gateway.devices.health")

STATE_EVERY_S = 30.0


class Monitor(threading.Thread):
    def __init__(self, registry, cfg, publish_device=None, publish_gateway=None, summary=None,
                 every_second=None):
        super().__init__(name="hcp-health", daemon=True)
        self.registry = registry
        self.cfg = cfg
        self.publish_device = publish_device
        self.publish_gateway = publish_gateway
        self.summary = summary
        self._halt = threading.Event()
        self._last_state = 0.0
        self.every_second = every_second  # e.g. the router's resend of unconfirmed commands

    @property
    def offline_after_s(self):
        return self.cfg.device.heartbeat_s * self.cfg.device.offline_after_missed

    def stop(self, timeout=5.0):
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def device_changed(self, dev, what):
        if self.publish_device is not None:
            try:
                self.publish_device(dev)
            except Exception:
                log.exception("publishing %s", dev.device_id)

    def tick(self, now=None):
        now = time.time() if now is None else now
        limit = self.offline_after_s
        for dev in self.registry.all():
            if dev.online and dev.last_seen is not None and now - dev.last_seen > limit:
                dev.online = False
                log.warning("device %s offline: not heard for %.0f s", dev.device_id, now - dev.last_seen)
                self.device_changed(dev, "offline")
        if self.publish_gateway is not None and now - self._last_state >= STATE_EVERY_S:
            self._last_state = now
            try:
                self.publish_gateway(self.summary())
            except Exception:
                log.exception("publishing gateway state")

    def run(self):
        while not self._halt.wait(1.0):
            try:
                self.tick()
                if self.every_second is not None:
                    self.every_second()
            except Exception:
                log.exception("health tick")
