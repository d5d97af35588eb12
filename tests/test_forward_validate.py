"""validate() of each forwarder: good tables pass, every problem names its key."""

from gateway.forward import http as forward_http
from gateway.forward import mqtt as forward_mqtt


def test_mqtt_good_settings_pass(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert forward_mqtt.validate({"name": "province", "type": "mqtt", "host": "broker.example",
                                  "port": 8883, "topic": "hcp/records/{client_id}",
                                  "client_id": "hcp-gw-330100-hall1", "username": "u", "password": "p",
                                  "tls": {"ca": str(ca)}, "window": 100, "batch": 50,
                                  "retention_days": 30, "protocol": "5"}) == []
    assert forward_mqtt.validate({"name": "p", "host": "h"}) == []


def test_mqtt_bad_settings_name_the_key(tmp_path):
    errs = forward_mqtt.validate({"name": "province", "port": 70000, "window": 0, "batch": "big",
                                  "topic": "hcp/#", "tls": {"ca": str(tmp_path / "none.pem")},
                                  "password": "p", "protocol": "4", "hots": "typo",
                                  "backoff_min_s": 5, "backoff_max_s": 1})
    text = "\n".join(errs)
    for expected in ("upstream.province.host: required",
                     "upstream.province.port: must be an integer 1..65535",
                     "upstream.province.window: must be an integer 1..10000",
                     "upstream.province.batch: must be an integer 1..1000",
                     "upstream.province.topic: must not contain the wildcards",
                     "upstream.province.tls.ca: file not found",
                     "upstream.province.password: given without username",
                     "upstream.province.protocol:",
                     "upstream.province.hots: unknown key",
                     "upstream.province.backoff_max_s: must be >= backoff_min_s"):
        assert expected in text, (expected, errs)
    assert len(errs) == 10
    assert forward_mqtt.validate({"host": "h", "port": True}) == \
        ["upstream.port: must be an integer 1..65535"]
    assert forward_mqtt.validate([]) == ["upstream: must be a table"]
    assert forward_mqtt.validate({"host": "h", "port": 0}, prefix="upstream[2]") == \
        ["upstream[2].port: must be an integer 1..65535"]


def test_http_settings():
    assert forward_http.validate({"name": "p", "url": "https://platform.example/api/eval",
                                  "token": "t", "headers": {"X-Hall": "1"}, "timeout_s": 5,
                                  "batch": 1}) == []
    errs = forward_http.validate({"name": "p", "url": "ftp://x", "headers": {"a": 1},
                                  "timeout_s": 0, "batch": 0, "tls": True, "extra": 1})
    text = "\n".join(errs)
    for expected in ("upstream.p.url: must be an http:// or https:// URL",
                     "upstream.p.headers: must be a table of strings",
                     "upstream.p.timeout_s: must be a number",
                     "upstream.p.batch: must be an integer 1..1000",
                     "upstream.p.extra: unknown key"):
        assert expected in text, (expected, errs)
    assert forward_http.validate({"name": "p"}) == ["upstream.p.url: required"]
    assert forward_http.validate({"name": "p", "url": "http://h:99999/"}) == \
        ["upstream.p.url: has a bad port"]
    assert forward_http.validate({"name": "p", "url": "http://h/", "tls": True}) == \
        ["upstream.p.tls: given for a URL that is not https://"]


def test_constructors_refuse_bad_settings(tmp_path):
    import pytest

    from gateway.errors import ConfigError, GatewayError
    from gateway.forward.http import HttpForwarder
    from gateway.forward.mqtt import MqttForwarder

    with pytest.raises(ConfigError, match=r"upstream\.prov\.port: must be an integer"):
        MqttForwarder(tmp_path / "h.db", "prov", {"host": "h", "port": -1})
    with pytest.raises(ConfigError, match=r"upstream\.prov\.url: required"):
        HttpForwarder(tmp_path / "h.db", "prov", {})
    assert issubclass(ConfigError, GatewayError)
