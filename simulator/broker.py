"""An MQTT broker process for the demo, the simulator and the tests.

Mosquitto (Debian `mosquitto`) when it is installed, otherwise the embedded
pure-Python broker amqtt, each in its own process on 127.0.0.1 so that a
`broker-restart` fault can kill it like a real one. Queues are unbounded:
Mosquitto's default max_queued_messages of 1000 would drop QoS 1 messages for
a slow subscriber, and a loss seen in a test must be the product's, never the
broker's (docs/design.md §7).

    python -m simulator.broker --port 1883     # run the embedded broker
"""

import argparse
import getpass
import os
import shutil
import signal
import subprocess
import sys

from simulator.net import free_port, wait_port
from simulator.procs import popen, stop_process


def mosquitto_path():
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None


class BrokerProcess:
    """A broker on 127.0.0.1:port. kind is "mosquitto" or "amqtt"."""

    def __init__(self, workdir, port=None, kind="auto", persistent=False, secure_conf=None):
        if kind == "auto":
            kind = "mosquitto" if mosquitto_path() else "amqtt"
        if kind not in ("mosquitto", "amqtt"):
            raise ValueError("broker kind must be auto, mosquitto or amqtt, not %r" % kind)
        if kind == "mosquitto" and not mosquitto_path():
            raise RuntimeError("mosquitto is not installed (Debian package `mosquitto`; `make test` installs it)")
        self.kind = kind
        # persistent: Mosquitto saves sessions and queued QoS 1 messages to
        # disk when it stops, so a restart loses nothing it had accepted
        # (what a production broker does; amqtt has no persistence).
        self.persistent = persistent and kind == "mosquitto"
        # secure_conf: a mosquitto.conf written by `hcp gateway broker-config`
        # (TLS listener, users, ACL), used instead of the open loopback one.
        if secure_conf is not None and kind != "mosquitto":
            raise ValueError("the broker-config (TLS, users, ACL) is Mosquitto's")
        self.secure_conf = secure_conf
        self.workdir = str(workdir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc = None
        self.log = os.path.join(self.workdir, "broker-%d.log" % self.port)

    def _command(self):
        if self.kind == "amqtt":
            return [sys.executable, "-m", "simulator.broker", "--port", str(self.port)]
        conf = os.path.join(self.workdir, "mosquitto-%d.conf" % self.port)
        with open(conf, "w") as f:
            if self.secure_conf is not None:
                with open(self.secure_conf) as g:
                    f.write(g.read())
            else:
                f.write("listener %d 127.0.0.1\n" % self.port)
                f.write("allow_anonymous true\n")
            # Nagle's algorithm against delayed ACKs costs a small QoS 1
            # message ~40 ms on loopback: a device's ACK must not wait for it.
            f.write("set_tcp_nodelay true\n")
            f.write("max_queued_messages 0\n")  # 0 = unlimited
            f.write("max_inflight_messages 0\n")
            if self.persistent:
                store = os.path.join(self.workdir, "mosquitto-%d" % self.port)
                os.makedirs(store, exist_ok=True)
                f.write("persistence true\n")
                f.write("persistence_location %s/\n" % store)
                f.write("autosave_interval 3600\n")  # saved on every graceful stop anyway
            else:
                f.write("persistence false\n")
            # Run as root, Mosquitto drops to user "mosquitto", who may not
            # write our directory: stay who we are.
            f.write("user %s\n" % getpass.getuser())
        return [mosquitto_path(), "-c", conf]

    def start(self, timeout=15.0):
        with open(self.log, "ab") as log:
            self.proc = popen(self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, timeout=timeout, proc=self.proc)
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        stop_process(self.proc, 5)

    def kill(self):
        """kill -9: the broker dies without a goodbye, as in a crash."""
        if self.running:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """Stop (SIGTERM: a persistent broker saves its queues) and start again."""
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _run_amqtt(port):
    import asyncio
    import logging

    from amqtt.broker import Broker

    logging.basicConfig(level=logging.WARNING)
    config = {
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % port}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }

    async def main():
        broker = Broker(config)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await broker.shutdown()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the embedded MQTT broker (amqtt) on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=1883)
    _run_amqtt(parser.parse_args().port)
