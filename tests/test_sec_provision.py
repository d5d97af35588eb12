"""Provisioning a device key (security review #12, finding 1): only where the
technician has the device in hand, never in clear across the hall network.

- `hcp tool provision --dir` writes the key into a sim device (0600, in a
  0700 flash directory), the device boots with it and pairs;
- the tool refuses to ask a gateway on another host over plain http;
- the gateway refuses to hand a key out over plain http to another host
  (403), and hands it out over TLS or to its own machine.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from support.gwharness import TOKEN, InProcess, write_config
from support.procs import free_port

from tools import provision

HCP = str(pathlib.Path(sys.executable).parent / "hcp")


def own_address():
    """This machine's address on its network (not loopback), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def post_key(base, device_id, context=None):
    req = urllib.request.Request("%s/api/devices/%s/key" % (base, device_id), data=b"{}", method="POST",
                                 headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_tool_refuses_plain_http_to_another_host():
    for base in ("http://192.0.2.7:8780", "http://gw.hall.example:8780"):
        with pytest.raises(provision.ProvisionError, match="in clear"):
            provision.check_transport(base)
    for base in ("http://127.0.0.1:8780", "http://localhost:8780", "http://[::1]:8780", "https://gw.hall:8780"):
        provision.check_transport(base)


def test_the_gateway_hands_a_key_only_to_itself_or_over_tls(tmp_path):
    addr = own_address()
    if addr is None:
        pytest.skip("this machine has no address but loopback: no other host to ask from")
    port = free_port()
    conf = write_config(tmp_path, http={"listen": "0.0.0.0:%d" % port})
    with InProcess(conf) as gw:
        code, body = post_key("http://%s:%d" % (addr, port), "EV-1")
        assert code == 403 and "TLS" in body["error"] and "key" not in body
        assert gw.gw.registry.get("EV-1") is None
        code, body = post_key("http://127.0.0.1:%d" % port, "EV-1")
        assert code == 201 and len(bytes.fromhex(body["key"])) == 32


def test_tool_provision_dir_then_the_device_boots_keyed_and_pairs(tmp_path):
    from simulator.hall import SimHall

    hall = SimHall(tmp_path / "hall", devices=0, seed=3, pair=False)
    hall.start_servers()
    try:
        flash_dir = tmp_path / "dev"
        out = subprocess.run([HCP, "tool", "flash", "--board", "sim", "--dir", str(flash_dir)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        out = subprocess.run([HCP, "tool", "provision", "--dir", str(flash_dir), "--config", str(hall.config_path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        device_id = json.loads((flash_dir / "device.json").read_text())["device_id"]
        assert device_id in out.stdout
        key = flash_dir / "key"
        assert key.stat().st_mode & 0o777 == 0o600 and flash_dir.stat().st_mode & 0o777 == 0o700
        assert len(bytes.fromhex(key.read_text())) == 32
        assert key.read_text() not in out.stdout + out.stderr  # never printed
        audit = hall.api.call("GET", "/api/audit")[1]["audit"]
        assert [a["action"] for a in audit] == ["provision"] and key.read_text() not in json.dumps(audit)
        # A second provisioning of a running-or-not device: a new key, the old one still accepted.
        again = subprocess.run([HCP, "tool", "provision", "--dir", str(flash_dir), "--config",
                                str(hall.config_path)], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "again" in again.stdout
        # A device flashed and provisioned by hand joins the running hall and pairs.
        hall.windows.extend(_plug(hall, flash_dir))
        w = hall.windows[-1]
        out = subprocess.run([HCP, "tool", "pair", "--staff", "S9", "--name", "王五", "--window", "A09",
                              "--device", device_id, "--config", str(hall.config_path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 15
        while w.device.state() != "idle" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w.device.state() == "idle"
        assert hall.api.call("GET", "/api/devices/%s" % device_id)[1]["key_confirmed"]
    finally:
        hall.stop()


def _plug(hall, flash_dir):
    """A cable from the hall's gateway to the device in flash_dir, powered on."""
    from simulator.device import SimDevice
    from simulator.hall import Window
    from simulator.wire import Line

    line = hall.relay.add(Line("manual", rate=0.0, seed=1))
    dev = SimDevice("manual", flash_dir, line, heap=hall.heap, main=flash_dir / "main.py")
    os.symlink(line.gateway_path, hall.ttydir / "manual")
    w = Window(0, dev, "A09", "S9", "王五")
    w.device_id = json.loads((flash_dir / "device.json").read_text())["device_id"]
    hall._wait_ports_open([w], timeout=15)
    dev.start()
    return [w]
