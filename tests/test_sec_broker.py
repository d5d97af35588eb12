"""`hcp gateway broker-config` (security review #12): the Mosquitto config it
writes, run by a real Mosquitto, holds: TLS only, no anonymous client, each
device on its own topics only, only the gateway reads every up topic, no
huge packet; and a gateway with [mqtt] tls + password_file serves a device
through it end to end."""

import secrets
import subprocess
import sys
import threading
import time
import tomllib

import paho.mqtt.client as mqtt
import pytest
from support.fakedev import FakeDevice, MqttTransport
from support.gwfixtures import connect, dead_http_upstream, invite, pair, rows
from support.gwharness import InProcess, write_config
from support.procs import Mosquitto, free_port

from gateway import broker_config, config

HCP = str(__import__("pathlib").Path(sys.executable).parent / "hcp")


@pytest.fixture
def secured(tmp_path):
    """A gateway config, the broker config written for it, Mosquitto running it."""
    port = free_port()
    out = tmp_path / "broker"
    conf = write_config(tmp_path, mqtt_port=port, upstreams=[dead_http_upstream()])
    proc = subprocess.run([HCP, "gateway", "broker-config", "-c", str(conf), "--out", str(out), "--port", str(port),
                           "--bind", "127.0.0.1", "--host", "127.0.0.1", "--device", "EV-1", "--device", "EV-2",
                           "--reader", "platform=hcp/records/#"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "password_file" in proc.stdout and "Traceback" not in proc.stderr
    broker = Mosquitto(str(tmp_path), port=port)
    broker.secure_conf = str(out / "mosquitto.conf")
    broker.start()
    creds = tomllib.loads((out / "credentials.toml").read_text())
    yield {"port": port, "out": out, "conf": conf, "creds": creds, "broker": broker}
    broker.stop()


def client(s, user=None, password=None, tls=True, name=None):
    """(connected?, client, received list)."""
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name or "t-" + secrets.token_hex(6))
    if user:
        c.username_pw_set(user, password)
    if tls:
        c.tls_set(ca_certs=str(s["out"] / "ca.crt"))
    c.on_message = lambda cl, u, m: got.append((m.topic, bytes(m.payload)))
    ok = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: ok.set() if not rc.is_failure else None
    try:
        c.connect("127.0.0.1", s["port"], keepalive=10)
    except OSError:
        return False, c, got
    c.loop_start()
    connected = ok.wait(3)
    return connected, c, got


def stop(c):
    c.loop_stop()
    c.disconnect()


def dev_pw(s, d):
    return s["creds"]["devices"][d]["password"]


def test_files_are_private_and_a_second_run_keeps_ca_and_passwords(secured, tmp_path):
    out = secured["out"]
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    for name in ("passwd", "acl", "ca.key", "server.key", "credentials.toml", "gateway.password"):
        assert (out / name).stat().st_mode & 0o077 == 0, name
    secret = dev_pw(secured, "EV-1")
    assert secret not in (out / "passwd").read_text()  # hashed ($7$, PBKDF2-SHA512)
    ca = (out / "ca.crt").read_bytes()
    again = broker_config.write(config.load(str(secured["conf"])), out, hosts=["127.0.0.1"],
                                port=secured["port"], devices=["EV-1", "EV-3"])
    assert again["devices"] == ["EV-1", "EV-3"] and (out / "ca.crt").read_bytes() == ca
    creds = tomllib.loads((out / "credentials.toml").read_text())
    assert creds["devices"]["EV-1"]["password"] == secret and "EV-3" in creds["devices"]


def test_no_anonymous_no_plain_tcp_no_wrong_password(secured):
    for kw in ({}, {"user": "EV-1", "password": "wrong"}, {"user": "nobody", "password": "x"}):
        ok, c, _ = client(secured, **kw)
        stop(c)
        assert not ok, kw
    ok, c, _ = client(secured, "EV-1", dev_pw(secured, "EV-1"), tls=False)
    stop(c)
    assert not ok
    ok, c, _ = client(secured, "EV-1", dev_pw(secured, "EV-1"))
    stop(c)
    assert ok


def test_each_device_only_on_its_own_topics_and_only_the_gateway_reads_them_all(secured):
    base = "hcp/hall-1/dev"
    gpw = secured["creds"]["gateway"]["password"]
    ok, gw, gw_got = client(secured, secured["creds"]["gateway"]["username"], gpw)
    assert ok
    gw.subscribe(base + "/+/up", qos=1)
    ok, d2, d2_got = client(secured, "EV-2", dev_pw(secured, "EV-2"))
    assert ok
    d2.subscribe(base + "/+/up", qos=1)  # a device snooping on the others
    d2.subscribe(base + "/EV-1/down", qos=1)
    d2.subscribe(base + "/EV-2/down", qos=1)
    ok, d1, _ = client(secured, "EV-1", dev_pw(secured, "EV-1"))
    assert ok
    time.sleep(0.3)
    d1.publish(base + "/EV-1/up", b"mine", qos=1).wait_for_publish(3)
    # Denied ones: dropped by the broker (whether it keeps d1 connected after is its business).
    d1.publish(base + "/EV-2/up", b"forged as EV-2", qos=0)
    d1.publish(base + "/EV-2/down", b"forged command", qos=0)
    gw.publish(base + "/EV-1/down", b"for EV-1", qos=1).wait_for_publish(3)
    gw.publish(base + "/EV-2/down", b"for EV-2", qos=1).wait_for_publish(3)
    time.sleep(0.5)
    assert gw_got == [(base + "/EV-1/up", b"mine")]
    assert d2_got == [(base + "/EV-2/down", b"for EV-2")]
    # No huge packet reaches anyone (max_packet_size).
    stop(d1)
    ok, d1, _ = client(secured, "EV-1", dev_pw(secured, "EV-1"))
    assert ok
    d1.publish(base + "/EV-1/up", b"\x01" * (4 << 20), qos=0)
    time.sleep(0.5)
    assert len(gw_got) == 1
    for c in (gw, d1, d2):
        stop(c)


def test_gateway_and_device_through_the_secured_broker(secured, tmp_path):
    out = secured["out"]
    doc = tomllib.loads(secured["conf"].read_text())
    doc["mqtt"].update({"username": secured["creds"]["gateway"]["username"],
                        "password_file": str(out / "gateway.password"), "tls": {"ca": str(out / "ca.crt")}})
    from support.gwharness import toml

    conf = tmp_path / "secure.toml"
    conf.write_text(toml(doc))
    with InProcess(conf) as gw:
        deadline = time.monotonic() + 10
        while not gw.gw.mqtt.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.gw.mqtt.connected
        dev = FakeDevice("EV-1", MqttTransport(secured["port"], "EV-1", username="EV-1",
                                               password=dev_pw(secured, "EV-1"), ca=str(out / "ca.crt")), boot=2)
        connect(dev, gw)
        pair(gw, dev, "S-1", "W-1")
        inv = invite(gw, dev, "W-1", [{"projectNo": "P-1"}])
        eid = dev.rate(2, ["R1"])
        dev.wait(lambda: eid in dev.acked)
        assert rows(gw.db, "SELECT state FROM invitations WHERE id = ?", inv["invitation"]) == [("rated",)]
        dev.t.close()


def test_a_bad_reader_option_is_one_line(tmp_path):
    conf = write_config(tmp_path, mqtt_port=1883)
    proc = subprocess.run([HCP, "gateway", "broker-config", "-c", str(conf), "--out", str(tmp_path / "b"),
                           "--reader", "nofilter"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "USER=FILTER" in proc.stderr and "Traceback" not in proc.stderr
