"""The config schema (gateway/settings.py) is the one source of the config:
the file `hcp gateway init` writes (every key, runs as is, every example
value accepted), docs/config.md (exactly what the schema generates), the
defaults the gateway and the forwarders run on, and every key a command
reads or a writer writes is one the schema accepts (issue 13, item 2)."""

import ast
import os
import pathlib
import re
import subprocess
import threading
import tomllib
import types

import pytest
from support.gwharness import HCP, TOKEN, config_doc, toml, write_config

from gateway import config, settings
from gateway.errors import ConfigError
from gateway.forward import http as forward_http
from gateway.forward import mqtt as forward_mqtt

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALL_TABLES = settings.TABLES + [settings.UPSTREAM] + list(settings.FORWARDERS.values())


def _sections(text):
    """{table ("hall", "mqtt", "upstream.mqtt", ...): [its lines, uncommented]}
    of an init file; a commented header counts ("# [mqtt]", "# [[upstream]]")."""
    out, lines = {}, None
    for line in text.splitlines():
        bare = line[2:] if line.startswith("# ") else line
        m = re.match(r"^\[(\w+)\]\s*$", bare)
        if m:
            lines = out[m.group(1)] = []
        elif bare.strip() == "[[upstream]]":
            lines = []
        elif lines is not None:
            lines.append(bare)
            k = re.match(r'^kind = "(\w+)"', bare)
            if k:
                out["upstream." + k.group(1)] = lines
    return out


def assert_every_key(text):
    """Every key of every table is in its table of the file, set or commented out."""
    sections = _sections(text)
    for t in settings.TABLES + list(settings.FORWARDERS.values()):
        keys = {m.group(1) for line in sections.get(t.name, ()) if (m := re.match(r"^(\w+) = ", line))}
        want = set(t.by_name) | (set(settings.COMMON_KEYS) if t.forwarder else set())
        assert keys == want, (t.name, want ^ keys)


def test_init_writes_every_key_and_the_file_runs_as_is(tmp_path):
    path = tmp_path / "hall.toml"
    done = subprocess.run([HCP, "gateway", "init", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = path.read_text(encoding="utf-8")
    cfg = config.load(str(path))  # starts nothing: a Config or a ConfigError
    assert cfg.mqtt is None and cfg.upstreams == [] and len(cfg.token) >= 16
    assert_every_key(text)
    # The values set are the schema's defaults, but where the file says otherwise on purpose.
    assert cfg.hall == config.Hall(id="hall-1", areaCode="330100", deptCode="001")
    assert cfg.device == config.Device() and cfg.alerts == config.Alerts() and cfg.pairing == config.Pairing()
    assert cfg.serial.ports and cfg.retention_days == 30.0


def _with(doc_key, key, value, tmp_path):
    """A minimal good config with one key of one table set to `value`."""
    doc = config_doc(tmp_path)
    if doc_key == "mqtt":
        doc["mqtt"] = {"host": "127.0.0.1", key: value}
    elif doc_key.startswith("upstream"):
        kind = doc_key.split(".")[1] if "." in doc_key else "http"
        up = {"name": "p", "kind": kind}
        up.update({"host": "h", "username": "u"} if kind == "mqtt" else {"url": "https://platform.example/r"})
        up[key] = value
        doc["upstream"] = [up]
    else:
        doc.setdefault(doc_key, {})[key] = value
    return doc


def test_every_example_value_in_the_init_file_is_accepted(tmp_path):
    """Uncommenting any one line of the init file gives a config that loads
    (the files a line names made first; TLS PEM files are test_sec_api_tls's)."""
    text = config.example()
    checked = 0
    for name, lines in _sections(text).items():
        for line in lines:
            m = re.match(r"^(\w+) = (.*?)\s*(#.*)?$", line)
            if not m or (name, m.group(1)) in {("http", "tls_cert"), ("http", "tls_key")}:
                continue
            key, value = m.group(1), tomllib.loads("v = " + m.group(2))["v"]
            for rel in ([value] if isinstance(value, str) else []) + \
                    (list(value.values()) if isinstance(value, dict) and key == "tls" else []):
                if isinstance(rel, str) and rel.endswith((".password", ".crt", ".db")):
                    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp_path / rel).write_text("secret\n")
            if key in ("name", "kind", "type") or name == "database" and key == "path":
                continue
            path = tmp_path / "one.toml"
            path.write_text(toml(_with(name, key, value, tmp_path)), encoding="utf-8")
            os.chmod(path, 0o600)
            try:
                config.load(str(path))
            except ConfigError as err:
                pytest.fail("%s.%s = %r from the init file: %s" % (name, key, value, err))
            checked += 1
    assert checked > 60


def test_docs_config_md_is_what_the_schema_generates():
    on_disk = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert on_disk == settings.reference_markdown(), \
        "docs/config.md is stale: .venv/bin/python -m gateway.settings > docs/config.md"
    assert ".venv/bin/python -m gateway.settings > docs/config.md" in on_disk.split("\n\n")[1]


def test_the_reference_has_every_key_with_its_type_default_unit_and_doc():
    md = settings.reference_markdown()
    for t in ALL_TABLES:
        for key in t.keys:
            row = next((line for line in md.splitlines() if line.startswith("| `%s` |" % key.name)
                        and key.doc.split(" ")[1] in line), None)
            assert row, (t.name, key.name)
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            assert len(cells) == 6 and cells[1] and cells[2], row
            assert cells[3] == key.unit, row
            if key.lo is not None:
                assert "%s..%s" % (settings._num(key.lo), settings._num(key.hi)) in row or key.why, row


def test_defaults_come_from_the_schema_once(tmp_path):
    """The config's sections and the forwarders' settings default to the
    schema's values, key by key."""
    cfg = config.load(str(write_config(tmp_path, mqtt_port=1883)))
    for section, obj in (("hall", cfg.hall), ("serial", cfg.serial), ("device", cfg.device),
                         ("alerts", cfg.alerts), ("pairing", cfg.pairing), ("mqtt", cfg.mqtt)):
        given = config_doc(tmp_path, mqtt_port=1883).get(section, {})
        for key in settings.table(section).keys:
            if key.name in given or key.required or key.reads:
                continue
            assert getattr(obj, key.name) == settings.default(section, key.name), (section, key.name)
    for cls, section in ((config.Serial, "serial"), (config.Device, "device"), (config.Alerts, "alerts"),
                         (config.Pairing, "pairing")):
        assert cls() == cls(**{k.name: settings.default(section, k.name) for k in settings.table(section).keys})
    assert config.Hall(id="h", areaCode="330100", deptCode="D").pf == settings.default("hall", "pf")
    assert config.MqttIngest(host="h").port == settings.default("mqtt", "port")
    assert cfg.max_size_mb == settings.default("database", "max_size_mb")
    assert cfg.commit_window_ms == settings.default("ingest", "commit_window_ms")
    fw = forward_mqtt.MqttForwarder(tmp_path / "f.db", "prov", {"host": "h"})  # made, not started
    for key in settings.FORWARDERS["mqtt"].keys:
        if key.name not in ("host", "port") and not key.reads:
            assert fw.settings[key.name] == settings.default("upstream.mqtt", key.name), key.name
    assert (fw.port, fw.retention_s, fw.poll_s, fw.backoff.maximum) == (1883, 7 * 86400.0, 0.25, 30.0)
    assert (fw.window, fw.batch, fw.max_payload) == tuple(settings.default("upstream.mqtt", k)
                                                          for k in ("window", "batch", "max_payload"))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert forward_mqtt.MqttForwarder(tmp_path / "f.db", "prov", {"host": "h", "tls": {"ca": str(ca)}}).port == 8883
    fw = forward_http.HttpForwarder(tmp_path / "f.db", "prov", {"url": "http://h/r"})
    assert (fw.batch, fw.max_body, fw.timeout) == (100, 1024 * 1024, 10.0)


def test_loader_and_forwarders_share_one_checker(tmp_path):
    bad = {"host": "h", "window": 0, "tls": {"ca": str(tmp_path / "none.pem")}, "protocol": "4"}
    mine = forward_mqtt.validate(dict(bad, name="m"))
    doc = config_doc(tmp_path)
    doc["upstream"] = [dict(bad, name="m", kind="mqtt")]
    with pytest.raises(ConfigError) as err:
        config.parse(doc, str(tmp_path / "hall.toml"))
    assert mine and str(err.value).splitlines()[1:] == ["  " + line for line in mine]
    with pytest.raises(ConfigError) as err:
        forward_mqtt.MqttForwarder(tmp_path / "f.db", "m", bad)
    assert str(err.value) == "; ".join(mine)


def test_upstream_password_file_and_disabled_targets(tmp_path):
    (tmp_path / "up.password").write_text("s3cret\nignored\n")
    path = write_config(tmp_path, upstreams=[
        {"name": "a", "kind": "mqtt", "host": "h", "username": "u", "password_file": "up.password"},
        {"name": "b", "kind": "http", "url": "http://h/r", "enabled": False}])
    cfg = config.load(str(path))
    assert [u.name for u in cfg.upstreams] == ["a"]
    assert cfg.upstreams[0].settings["password"] == "s3cret" and "password_file" not in cfg.upstreams[0].settings


@pytest.mark.parametrize("template", [
    "HTTPS://HALL.EXAMPLE/E/{staff_id}", "https://x/{window}/{staff_id}?d={device_id}", "https://x/E/",
    "https://x/{staff}", "https://x/{staff_id", "https://x/{}/{staff_id}", "https://x/{0}", "{staff_id}{x.y}",
    "https://x/{{staff_id}}", "{staff_id!r}"])
def test_pairing_url_template_is_checked_as_the_tool_fills_it(tmp_path, template):
    from tools.pair import DEFAULT_URL_TEMPLATE, evaluation_url

    try:
        evaluation_url(template, "S1")
        fills = True
    except Exception:  # noqa: BLE001 - PairError, or what format() raises on what the check let through
        fills = False
    doc = config_doc(tmp_path, pairing={"url_template": template})
    try:
        cfg = config.parse(doc, str(tmp_path / "hall.toml"))
    except ConfigError as err:
        assert not fills and "pairing.url_template:" in str(err), template
    else:
        assert fills and cfg.pairing.url_template == template
    assert settings.default("pairing", "url_template") == DEFAULT_URL_TEMPLATE


# ------------------------------------------------------------ every key any command reads or writes

def _doc_keys(tree):
    """(section, key, where) of config documents built in source: a dict
    literal whose keys are config sections including "hall", and
    `x["section"] = {...}`. Upstream tables: (upstream.<kind>, key)."""
    sections = {t.name for t in settings.TABLES} | {"upstream"}
    out = []

    def table_keys(section, node):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dict" and node.args:
            node = node.args[0]
        if not isinstance(node, ast.Dict):
            return
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        if section == "upstream":
            kinds = [v.value for k, v in zip(node.keys, node.values, strict=True)
                     if isinstance(k, ast.Constant) and k.value == "kind" and isinstance(v, ast.Constant)]
            section = "upstream." + (kinds[0] if kinds else "?")
        out.extend((section, k, node.lineno) for k in keys)

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "hall" in keys and set(keys) <= sections:
                for k, v in zip(node.keys, node.values, strict=True):
                    if k.value == "upstream" and isinstance(v, ast.List):
                        for item in v.elts:
                            table_keys("upstream", item)
                    else:
                        table_keys(k.value, v)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) \
                        and target.slice.value in sections - {"upstream"}:
                    table_keys(target.slice.value, node.value)
    return out


def _raw_reads(tree):
    """(section, key, line) of raw TOML reads: doc.get("section", {}).get("key")."""
    sections = {t.name for t in settings.TABLES}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant):
            inner = node.func.value
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "get" \
                    and inner.args and isinstance(inner.args[0], ast.Constant) and inner.args[0].value in sections:
                out.append((inner.args[0].value, node.args[0].value, node.lineno))
    return out


def _sources():
    for folder in ("gateway", "tools", "simulator", "bench", "tests/support"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _accepted(section, key):
    if section.startswith("upstream."):
        kind = section.split(".", 1)[1]
        tables = [settings.FORWARDERS[kind]] if kind in settings.FORWARDERS else list(settings.FORWARDERS.values())
        return key in settings.COMMON_KEYS or any(key in t.by_name for t in tables)
    return key in settings.table(section).by_name


def test_every_key_written_or_read_in_the_source_is_in_the_schema():
    found, unknown = [], []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for section, key, line in _doc_keys(tree) + _raw_reads(tree):
            found.append((section, key))
            if not _accepted(section, key):
                unknown.append("%s:%d %s.%s" % (path.relative_to(ROOT), line, section, key))
    assert not unknown, unknown
    # what the scan must see, or it proves nothing: the writers' documents
    # (simulator/hall.py, bench/load.py, bench/flood.py, tests/support/gwharness.py)
    assert {("hall", "areaCode"), ("serial", "ports"), ("device", "stuck_ms"), ("ingest", "commit_window_ms"),
            ("upstream.http", "timeout_s"), ("upstream.mqtt", "topic"), ("upstream.http", "backoff_min_s"),
            ("mqtt", "topic_prefix")} <= set(found), sorted(set(found))
    assert _accepted("pairing", "url_template") and not _accepted("pairing", "url")
    assert not _accepted("upstream.mqtt", "url") and _accepted("upstream.?", "url")


def test_the_configs_the_writers_write_load(tmp_path):
    """Each kind of config the project writes, through the writer, loads."""
    from bench.load import LoadHall
    from simulator.fastlink import FastHall
    from simulator.hall import SimHall

    ns = types.SimpleNamespace
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "gw.password").write_text("pw\n")
    for secure in ({}, {"username": "gw", "password_file": str(tmp_path / "gw.password"),
                        "tls": {"ca": str(tmp_path / "ca.crt")}}):
        hall = SimHall(tmp_path / ("sim%d" % bool(secure)), devices=1)
        hall.ttydir, hall.receivers, hall.broker = tmp_path / "tty", {"http": ns(port=9001)}, ns(port=9002)
        hall.mqtt_auth = secure
        hall._write_config()
        cfg = config.load(str(hall.config_path))
        assert [u.kind for u in cfg.upstreams] == ["http", "mqtt"] and cfg.mqtt is None
        assert cfg.upstreams[1].settings.get("password") == ("pw" if secure else None)
    size = threading.stack_size()
    try:
        fast = FastHall(tmp_path / "fast", devices=1)
    finally:
        threading.stack_size(size)  # FastHall sets its actors' stack size for the whole process
    fast.ttydir, fast.receivers, fast.broker = tmp_path / "tty", {"http": ns(port=9001)}, ns(port=9002)
    fast._write_config()
    assert config.load(str(fast.config_path)).mqtt.topic_prefix
    load = LoadHall(tmp_path / "load", devices=1, events=20, commit_window_ms=2.0)
    try:
        load.setup()
        cfg = config.load(str(load.conf))
    finally:
        load.close()
    assert cfg.commit_window_ms == 2.0 and cfg.upstreams[0].settings["backoff_min_s"] == 30.0
    cfg = config.load(str(write_config(tmp_path, ports=["/dev/x*"], mqtt_port=1883, http_port=9003,
                                       upstreams=[{"name": "p", "kind": "http", "url": "http://h/"}],
                                       alerts={"mqtt": False})))
    assert cfg.mqtt.port == 1883 and cfg.token == TOKEN and cfg.alerts.mqtt is False


def test_the_tool_reads_the_config_through_the_schema(tmp_path, monkeypatch):
    """`hcp tool` (pair, provision, list...) takes the API address, token, 差评
    reasons and the card's URL template from the gateway's config as the
    gateway reads it; without one, the schema's defaults."""
    from click.testing import CliRunner

    from tools import tool_cli

    for var in ("HCP_API", "HCP_TOKEN", "HCP_CACERT"):
        monkeypatch.delenv(var, raising=False)
    path = write_config(tmp_path, http_port=9004, pairing={"url_template": "https://h/{window}/{staff_id}"},
                        device={"reasons": [{"code": "X1", "label": "太慢"}]})
    gw = tool_cli._Gateway(str(path), None, None)
    assert (gw.base, gw.token) == ("http://127.0.0.1:9004", TOKEN)
    assert gw.url_template() == "https://h/{window}/{staff_id}" and gw.reasons() == [("X1", "太慢")]
    monkeypatch.chdir(tmp_path / "..")
    gw = tool_cli._Gateway("hall.toml", None, "t" * 16)  # no such file here: the defaults
    assert gw.base == "http://127.0.0.1:8780" and gw.token == "t" * 16
    assert gw.url_template() == settings.DEFAULT_URL_TEMPLATE and gw.reasons() == list(settings.FALLBACK_REASONS)
    bad = tmp_path / "bad.toml"
    bad.write_text(toml(config_doc(tmp_path, pairing={"url_template": "https://h/"})))
    os.chmod(bad, 0o600)
    res = CliRunner().invoke(tool_cli.tool, ["list", "--config", str(bad)])
    assert res.exit_code == 1 and "pairing.url_template: must contain {staff_id}" in res.output, res.output
    assert "Traceback" not in res.output
    helptext = " ".join(CliRunner().invoke(tool_cli.tool, ["pair", "--help"]).output.split())
    assert "[pairing] url_template" in helptext and _accepted("pairing", "url_template")
