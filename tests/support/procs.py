"""Start real server processes for tests: Mosquitto on a free loopback port.

Every process is started with its own config in a temp dir, bound to
127.0.0.1 only, and killed when the test ends."""

import os
import shutil
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listening on port %d" % port)


def mosquitto_path():
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


class Mosquitto:
    """A Mosquitto broker process on 127.0.0.1:port. Its queues are raised so
    that a slow test subscriber does not lose QoS 1 messages (Mosquitto drops
    beyond max_queued_messages, 1000 by default): a loss seen in a test is then
    the product's, not the broker's."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.port = port or free_port()
        self.proc = None
        self.log = os.path.join(workdir, "mosquitto-%d.log" % self.port)

    def start(self):
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed: run `make test` (installs the Debian package)")
        conf = os.path.join(self.workdir, "mosquitto-%d.conf" % self.port)
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % self.port)
            f.write("allow_anonymous true\n")
            f.write("max_queued_messages 0\n")  # 0 = no limit
            f.write("max_inflight_messages 0\n")
            f.write("persistence false\n")
        self.proc = subprocess.Popen([exe, "-c", conf], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()
