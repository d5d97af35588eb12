"""The server processes of a simulated hall besides the devices: the gateway
(`hcp gateway run`) and the upstream receivers (`python -m simulator.upstream`),
each a real process that a fault can kill -9 and restart."""

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

from simulator.broker import free_port, wait_port

BIN = pathlib.Path(sys.executable).parent


class ProcessError(RuntimeError):
    pass


def stop_process(proc, timeout=5.0):
    """SIGTERM, and SIGKILL if it has not exited within `timeout`."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Proc:
    """A restartable child process with its output in a log file."""

    def __init__(self, name, argv, workdir, ready_port=None, env=None, ready_text=None):
        self.name = name
        self.argv = argv
        self.workdir = str(workdir)
        self.ready_port = ready_port
        self.ready_text = ready_text
        self.env = env
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.log = os.path.join(self.workdir, name + ".log")

    def start(self, timeout=20.0):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         env=dict(os.environ, **(self.env or {})))
        self.starts += 1
        if self.ready_text:
            self._wait_text(timeout)
        if self.ready_port:
            try:
                wait_port(self.ready_port, timeout=timeout, proc=self.proc)
            except (RuntimeError, TimeoutError) as err:
                raise ProcessError("%s did not start: %s (log: %s)\n%s"
                                   % (self.name, err, self.log, self.tail())) from err
        return self

    def _wait_text(self, timeout):
        # The log holds every start's output; wait for one more ready line.
        want = self._count_text() + 1
        deadline = time.monotonic() + timeout
        while self._count_text() < want:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ProcessError("%s did not get ready (log: %s)\n%s" % (self.name, self.log, self.tail()))
            time.sleep(0.05)

    def _count_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().count(self.ready_text.encode())
        except OSError:
            return 0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()
            self.kills += 1

    def stop(self, timeout=10.0):
        stop_process(self.proc, timeout)

    def tail(self, lines=20):
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


class Api:
    """The gateway's JSON API."""

    def __init__(self, port, token, base=None):
        self.base = (base or "http://127.0.0.1:%d" % port).rstrip("/")
        self.token = token

    def call(self, method, path, body=None, timeout=10.0):
        """(status, json); status 0 when the gateway does not answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                return err.code, json.loads(err.read() or b"null")
            except ValueError:
                return err.code, None
        except (urllib.error.URLError, OSError, ValueError):
            return 0, None

    def wait_up(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = self.call("GET", "/api/status", timeout=2.0)
            if status == 200:
                return True
            time.sleep(0.05)
        return False


def gateway(workdir, config_path, http_port):
    return Proc("gateway", [str(BIN / "hcp"), "gateway", "run", "--config", str(config_path)],
                workdir, ready_port=http_port)


def http_receiver(workdir, name="upstream-http", port=None):
    port = port or free_port()
    db = os.path.join(str(workdir), name + ".db")
    p = Proc(name, [sys.executable, "-m", "simulator.upstream", "http", "--port", str(port), "--db", db],
             workdir, ready_port=port)
    p.port, p.db = port, db
    return p


def mqtt_receiver(workdir, broker_port, topic, name="upstream-mqtt"):
    db = os.path.join(str(workdir), name + ".db")
    p = Proc(name, [sys.executable, "-m", "simulator.upstream", "mqtt", "--port", str(broker_port),
                    "--topic", topic, "--db", db], workdir, ready_text='"ready": true')
    p.db = db
    return p


def control_http_receiver(port, **cmd):
    req = urllib.request.Request("http://127.0.0.1:%d/control" % port, data=json.dumps(cmd).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())
