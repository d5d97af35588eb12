"""The gateway config: the example runs as is, bad configs name the key,
the CLI prints them without a traceback (exit 2)."""

import os
import subprocess

import pytest
from support.gwharness import HCP, config_doc, toml, write_config

from gateway import config
from gateway.errors import ConfigError


def _errors(tmp_path, mutate):
    doc = config_doc(tmp_path)
    mutate(doc)
    path = tmp_path / "bad.toml"
    path.write_text(toml(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        config.load(str(path))
    return str(exc.value)


def test_example_loads_with_defaults(tmp_path):
    path = tmp_path / "hall.toml"
    path.write_text(config.example(), encoding="utf-8")
    cfg = config.load(str(path))
    assert cfg.hall.pf == "5" and cfg.hall.tz_offset_min == 480
    assert cfg.device.offline_after_missed == 3 and cfg.device.invite_timeout_s == 10
    assert cfg.reason_codes == ["R%d" % i for i in range(1, 9)]
    assert cfg.db_path == str(tmp_path / "hcp-gateway.db")
    assert len(cfg.token) >= 16 and cfg.upstreams == [] and cfg.mqtt is None
    assert config.example() != config.example()  # a fresh token each time


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["hall"].pop("areaCode"), "hall.areaCode: missing"),
    (lambda d: d["hall"].update(areaCode="33A"), "hall.areaCode: must be the 6-12 digit"),
    (lambda d: d["hall"].update(tz_offset_min="8"), "hall.tz_offset_min: must be an integer"),
    (lambda d: d["http"].update(listen="localhost"), "http.listen: must be HOST:PORT"),
    (lambda d: d["http"].update(token="short"), "http.token: must be at least 16"),
    (lambda d: d["serial"].update(ports="/dev/ttyUSB0"), "serial.ports: must be a list"),
    (lambda d: d["serial"].update(baudrat=9600), "serial.baudrat: unknown key"),
    (lambda d: d.update(mqtt={"host": "127.0.0.1", "port": 70000}), "mqtt.port: must be 1..65535"),
    (lambda d: d["device"].update(reasons=[{"code": "R1"}, {"code": "R1"}]), "device.reasons[1].code: duplicate"),
    (lambda d: d["database"].update(path="/nonexistent-dir/x.db"), "database.path: directory does not exist"),
    (lambda d: d.update(upstream=[{"name": "p", "kind": "ftp"}]), "upstream[0] (p).kind: must be one of"),
    (lambda d: d.update(upstream=[{"name": "p", "kind": "http"}]), "upstream.p.url: required"),
    (lambda d: d.update(upstream=[{"name": "m", "kind": "mqtt", "host": "h", "window": 0}]),
     "upstream.m.window: must be an integer"),
])
def test_bad_config_names_the_key(tmp_path, mutate, needle):
    assert needle in _errors(tmp_path, mutate)


def test_several_problems_are_all_reported(tmp_path):
    def mutate(d):
        d["hall"]["id"] = "bad id!"
        d["device"]["heartbeat_s"] = 0
    msg = _errors(tmp_path, mutate)
    assert "hall.id:" in msg and "device.heartbeat_s:" in msg


def test_cli_bad_config_exit_2_without_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[hall]\nid = 'x'\n", encoding="utf-8")
    proc = subprocess.run([HCP, "gateway", "run", "--config", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "hall.areaCode: missing" in err and "http.token" in err and "Traceback" not in err
    proc = subprocess.run([HCP, "gateway", "check", "--config", str(tmp_path / "none.toml")],
                          capture_output=True, timeout=30)
    assert proc.returncode == 2 and b"not found" in proc.stderr


def test_cli_init_writes_a_config_that_checks(tmp_path):
    path = tmp_path / "hall.toml"
    proc = subprocess.run([HCP, "gateway", "init", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([HCP, "gateway", "check", "-c", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith(b"OK"), proc.stderr
    proc = subprocess.run([HCP, "gateway", "init", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 2 and b"exists" in proc.stderr


def test_upstream_settings_are_handed_to_the_forwarder(tmp_path):
    path = write_config(tmp_path, database={"retention_days": 3},
                        upstreams=[{"name": "prov", "kind": "http", "url": "http://127.0.0.1:9/x", "batch": 10}])
    cfg = config.load(str(path))
    (up,) = cfg.upstreams
    assert up.name == "prov" and up.kind == "http"
    assert up.settings == {"url": "http://127.0.0.1:9/x", "batch": 10, "retention_days": 3.0}


def test_upstream_mqtt_client_id_from_hall_and_tls_paths_from_the_config_dir(tmp_path):
    from gateway import config as cfgmod

    (tmp_path / "certs").mkdir()
    for name in ("ca.pem", "gw.pem", "gw.key"):
        (tmp_path / "certs" / name).write_text("x")
    conf = tmp_path / "hall.toml"
    conf.write_text(
        '[hall]\nid = "hall-7"\nareaCode = "330100"\ndeptCode = "001"\n'
        '[database]\npath = "gw.db"\n[http]\nlisten = "127.0.0.1:8780"\ntoken = "0123456789abcdef"\n'
        '[[upstream]]\nname = "prov"\nkind = "mqtt"\nhost = "127.0.0.1"\n'
        'tls = { ca = "certs/ca.pem", cert = "certs/gw.pem", key = "certs/gw.key" }\n')
    old = os.getcwd()
    os.chdir("/")  # relative to the config file, not to wherever the gateway starts
    try:
        cfg = cfgmod.load(conf)
    finally:
        os.chdir(old)
    up = cfg.upstreams[0]
    assert up.settings["client_id"] == "hcp-gw-hall-7-prov"
    assert up.settings["tls"]["ca"] == str(tmp_path / "certs" / "ca.pem")
