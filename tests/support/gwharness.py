"""Run the hall gateway in tests: a config file, the HTTP API, the gateway
in-process (to reach into it) or as a real `hcp gateway run` process (to
kill -9 it).

    conf = write_config(tmp_path, ports=[str(tmp_path / "by-id" / "*")])
    with InProcess(conf) as gw: ...        # gw.gw is the service object
    proc = GatewayProcess(conf).start()    # .kill9(), .restart(), .api(...)
"""

import os
import signal
import subprocess
import sys
import time

from support.procs import free_port, wait_port

from gateway import tomlw
from gateway.client import Client
from gateway.files import write_private

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HCP = os.path.join(os.path.dirname(sys.executable), "hcp")  # the entry point of the tests' virtualenv
TOKEN = "test-token-0123456789abcdef"


toml = tomlw.dumps  # configs are written the way the simulator writes its own


def config_doc(tmp_path, ports=(), mqtt_port=None, upstreams=(), http_port=None, **sections):
    doc = {
        "hall": {"id": "hall-1", "areaCode": "330100", "deptCode": "D01"},
        "database": {"path": str(tmp_path / "gw.db")},
        "http": {"listen": "127.0.0.1:%d" % (http_port or free_port()), "token": TOKEN},
        "serial": {"ports": list(ports), "rescan_s": 0.2, "reopen_max_s": 0.5},
        "device": {"heartbeat_s": 30},
    }
    if mqtt_port:
        doc["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    for k, v in sections.items():
        doc.setdefault(k, {}).update(v)
    if upstreams:
        doc["upstream"] = list(upstreams)
    return doc


def write_config(tmp_path, name="hall.toml", **kw):
    doc = config_doc(tmp_path, **kw)
    path = tmp_path / name
    write_private(path, toml(doc))  # it holds the token: 0600, as `hcp gateway init` writes it
    return path


def api(port, method, path, body=None, token=TOKEN, timeout=10.0):
    """(status, json) from the gateway's API (token None: without one)."""
    return Client("http://127.0.0.1:%d" % port, token, timeout=timeout).call(method, path, body)


class InProcess:
    """The gateway service in this process (threads), stopped on exit."""

    def __init__(self, conf_path):
        from gateway import config
        from gateway.service import Gateway

        self.cfg = config.load(str(conf_path))
        self.gw = Gateway(self.cfg)
        self.db = self.cfg.db_path

    @property
    def port(self):
        return self.gw.api.port

    def api(self, method, path, body=None, **kw):
        return api(self.port, method, path, body, **kw)

    def __enter__(self):
        self.gw.start()
        return self

    def __exit__(self, *exc):
        self.gw.stop()


class GatewayProcess:
    """`hcp gateway run --config PATH` as a child process."""

    def __init__(self, conf_path, log_path=None):
        from gateway import config

        self.conf_path = str(conf_path)
        self.cfg = config.load(self.conf_path)
        self.port = self.cfg.http_port
        self.log_path = log_path or self.conf_path + ".log"
        self.proc = None

    def start(self, timeout=15.0):
        self.proc = subprocess.Popen([HCP, "gateway", "run", "--config", self.conf_path],
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        wait_port(self.port, timeout=timeout, proc=self.proc)
        return self

    def api(self, method, path, body=None, **kw):
        return api(self.port, method, path, body, **kw)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def wait_for(pred, timeout=10.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(step)


def python():
    return sys.executable
