"""gateway/client.py, the one client of the gateway's API: (status, json)
from call(), need()'s one-line errors (no answer, the token, a refusal
with the gateway's own reason and its body), the hints a command gives,
and the address a config describes. The https cases are in
tests/test_sec_api_tls.py (they need its certificates)."""

import types

import pytest
from support.gwharness import TOKEN, InProcess, write_config
from support.procs import free_port

from gateway.client import Client, ClientError


def test_call_and_need_against_a_gateway(tmp_path):
    with InProcess(write_config(tmp_path)) as gw:
        api = Client("http://127.0.0.1:%d/" % gw.port, TOKEN)
        status, body = api.call("GET", "/api/status")
        assert status == 200 and body["session"] >= 1 and api.error is None
        assert api.need("GET", "/api/devices") == {"devices": [], "unprovisioned": []}
        assert api.wait_up(timeout=2)
        with pytest.raises(ClientError) as err:
            api.need("GET", "/api/devices/EV-NONE")
        assert err.value.status == 404 and str(err.value) == "the gateway refused (HTTP 404): no device EV-NONE"
        assert err.value.body == {"error": "no device EV-NONE"}
        with pytest.raises(ClientError) as err:
            api.need("POST", "/api/pair", {"device_id": "EV-1", "staff_id": "S1", "window": "W1"})
        assert err.value.status == 409 and "provisioned" in str(err.value)
        for token, hints, want in ((None, None, "the gateway refused the token"),
                                   ("wrong", {"token": "use --token"}, "the gateway refused the token (use --token)")):
            with pytest.raises(ClientError) as err:
                Client(api.base, token, hints=hints).need("GET", "/api/status")
            assert err.value.status == 401 and str(err.value) == want


def test_no_answer_is_status_0_and_one_line():
    base = "http://127.0.0.1:%d" % free_port()  # nothing listens there
    api = Client(base, TOKEN, timeout=2, hints={"api": "use --api"})
    assert api.call("GET", "/api/status") == (0, None) and isinstance(api.error, OSError)
    assert not api.wait_up(timeout=0.2)
    with pytest.raises(ClientError) as err:
        api.need("GET", "/api/status")
    msg = str(err.value)
    assert err.value.status == 0 and msg.startswith("the gateway does not answer at %s: " % base), msg
    assert msg.endswith("(is `hcp gateway run` up? use --api)") and "\n" not in msg, msg


def test_a_ca_file_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(ClientError) as err:
        Client("https://127.0.0.1:1", TOKEN, cafile=str(tmp_path / "missing.pem"))
    assert "cannot use the CA file" in str(err.value) and "missing.pem" in str(err.value)
    Client("http://127.0.0.1:1", TOKEN, cafile=str(tmp_path / "missing.pem"))  # plain http reads no CA


def _cfg(listen_host, port=8780, tls_cert=None):
    return types.SimpleNamespace(http_host=listen_host, http_port=port, tls_cert=tls_cert, token=TOKEN)


def test_the_gateway_of_a_config(monkeypatch, tmp_path):
    monkeypatch.delenv("HCP_CACERT", raising=False)
    assert Client.of_config(_cfg("0.0.0.0")).base == "http://127.0.0.1:8780"
    assert Client.of_config(_cfg("::", 9000)).base == "http://127.0.0.1:9000"
    assert Client.of_config(_cfg("::1")).base == "http://[::1]:8780"
    assert Client.of_config(_cfg("10.0.0.5")).base == "http://10.0.0.5:8780"
    assert Client.of_config(_cfg("127.0.0.1")).token == TOKEN
    # https: the certificate the config names is the CA file (no such file: the error names it)
    with pytest.raises(ClientError) as err:
        Client.of_config(_cfg("0.0.0.0", tls_cert=str(tmp_path / "server.pem")))
    assert "server.pem" in str(err.value)
    monkeypatch.setenv("HCP_CACERT", str(tmp_path / "ca.pem"))
    with pytest.raises(ClientError) as err:
        Client.of_config(_cfg("0.0.0.0", tls_cert=str(tmp_path / "server.pem")))
    assert "ca.pem" in str(err.value)
