"""Security review (issue 12), finding 15: the API's exposure. [http]
tls_cert/tls_key make it HTTPS (TLS 1.2+); a non-loopback listen without
TLS is warned about; every answer says nosniff and the page a strict CSP,
no framing, no referrer; the technician's tools reach an HTTPS gateway with
a CA file. Certificates made here with the openssl command line."""

import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import warnings

import pytest
from support.gwharness import HCP, TOKEN, InProcess, config_doc, toml, write_config
from support.procs import free_port

from gateway import config
from gateway.client import Client
from gateway.errors import ConfigError

CHROMIUM = "/usr/bin/chromium"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 signed by it, and a second
    CA that signed nothing here."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=hcp test %s" % ca, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                               "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


@pytest.fixture
def quiet(caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    yield caplog
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, ["%s: %s" % (r.name, r.getMessage()) for r in bad]


def _tls_conf(tmp_path, pki, listen=None, **keys):
    """A config next to copies of the server's PEM files, named relative to it."""
    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    doc = config_doc(tmp_path)
    doc["http"].update({"tls_cert": "server.pem", "tls_key": "server.key"}, **keys)
    if listen:
        doc["http"]["listen"] = listen
    path = tmp_path / "hall.toml"
    path.write_text(toml(doc), encoding="utf-8")
    return path


def _load(tmp_path, **keys):
    doc = config_doc(tmp_path)
    doc["http"].update(keys)
    path = tmp_path / "check.toml"
    path.write_text(toml(doc), encoding="utf-8")
    return config.load(str(path))


def test_tls_keys_are_checked_at_load(tmp_path, pki):
    cfg = config.load(str(_tls_conf(tmp_path, pki)))
    assert cfg.tls_cert == str(tmp_path / "server.pem") and cfg.tls_key == str(tmp_path / "server.key")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    for keys, key, needle in (
            ({"tls_cert": "server.pem"}, "http.tls_key", "both"),
            ({"tls_key": "server.key"}, "http.tls_cert", "both"),
            ({"tls_cert": "missing.pem", "tls_key": "server.key"}, "http.tls_cert", "cannot read"),
            ({"tls_cert": "server.pem", "tls_key": "missing.key"}, "http.tls_key", "cannot read"),
            ({"tls_cert": "garbage.pem", "tls_key": "server.key"}, "http.tls_cert", "PEM"),
            ({"tls_cert": str(pki / "ca.pem"), "tls_key": "server.key"}, "http.tls_cert", "key"),
            ({"tls_cert": 5, "tls_key": "server.key"}, "http.tls_cert", "string")):
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, **keys)
        line = next((x for x in str(err.value).splitlines() if key in x), "")
        assert needle in line, str(err.value)
    # The example documents them (commented out: it runs as is, on loopback).
    assert "# tls_cert = " in config.example() and "# tls_key = " in config.example()


def test_a_listen_beyond_loopback_without_tls_is_warned_about(tmp_path, pki):
    for listen in ("127.0.0.1:8780", "[::1]:8780", "localhost:8780"):
        assert _load(tmp_path, listen=listen).warnings == [], listen
    for listen in ("0.0.0.0:8780", "192.168.1.20:8780", "[::]:8780"):
        warnings = _load(tmp_path, listen=listen).warnings
        assert len(warnings) == 1 and "http.listen" in warnings[0] and "tls_cert" in warnings[0], warnings
    assert config.load(str(_tls_conf(tmp_path, pki, listen="0.0.0.0:8780"))).warnings == []
    # `hcp gateway check` shows it (and still passes the config).
    path = tmp_path / "open.toml"
    doc = config_doc(tmp_path)
    doc["http"]["listen"] = "0.0.0.0:8780"
    path.write_text(toml(doc), encoding="utf-8")
    os.chmod(path, 0o600)
    done = subprocess.run([HCP, "gateway", "check", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "OK" in done.stdout, done
    assert "http.listen" in done.stderr and "in clear" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_gateway_warns_at_start(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hcp")
    with InProcess(write_config(tmp_path, http={"listen": "0.0.0.0:%d" % free_port()})):
        pass
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "in clear" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]


def _https(port, cafile, path="/api/status", ciphers=None, **ctx_opts):
    ctx = ssl.create_default_context(cafile=str(cafile))
    if ciphers:
        ctx.set_ciphers(ciphers)
    for k, v in ctx_opts.items():
        setattr(ctx, k, v)
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_https_serves_the_api_tls12_and_up_and_nothing_in_clear(tmp_path, pki, quiet):
    with InProcess(_tls_conf(tmp_path, pki)) as gw:
        code, headers, body = _https(gw.port, pki / "ca.pem")
        assert code == 200 and json.loads(body)["session"], body
        assert headers["X-Content-Type-Options"] == "nosniff"
        # Keep-alive over TLS: several requests on one connection.
        c = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=5,
                                        context=ssl.create_default_context(cafile=str(pki / "ca.pem")))
        for _ in range(3):
            c.request("GET", "/api/status", headers={"Authorization": "Bearer " + TOKEN})
            assert c.getresponse().read() and c.sock is not None
        c.close()
        # Not with a client that trusts another CA; not with TLS 1.1.
        with pytest.raises(ssl.SSLCertVerificationError):
            _https(gw.port, pki / "other-ca.pem")
        # (the client offers TLS 1.0-1.1 for real: SECLEVEL=0; the server's alert refuses them)
        with pytest.raises(ssl.SSLError) as err, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _https(gw.port, pki / "ca.pem", ciphers="DEFAULT:@SECLEVEL=0", minimum_version=ssl.TLSVersion.TLSv1,
                   maximum_version=ssl.TLSVersion.TLSv1_1)
        assert "PROTOCOL_VERSION" in str(err.value), err.value
        # Plain HTTP gets no answer in clear (and the server logs no traceback).
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        s.close()
        assert b"session" not in got and TOKEN.encode() not in got
        # The simulator's / tools' client, with the CA file.
        assert Client("https://127.0.0.1:%d" % gw.port, TOKEN, cafile=str(pki / "ca.pem")).call(
            "GET", "/api/status")[0] == 200


def test_security_headers(tmp_path, quiet):
    with InProcess(write_config(tmp_path)) as gw:
        def get(path, token=TOKEN, method="GET"):
            c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            try:
                c.request(method, path, headers={"Authorization": "Bearer " + token} if token else {})
                r = c.getresponse()
                r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}
            finally:
                c.close()

        for path, token, method, want in (("/", None, "GET", 200), ("/dashboard", None, "GET", 200),
                                          ("/web/dashboard.js", None, "GET", 200),
                                          ("/api/status", TOKEN, "GET", 200), ("/api/status", None, "GET", 401),
                                          ("/metrics", TOKEN, "GET", 200), ("/api/nothing", TOKEN, "GET", 404),
                                          ("/api/status", TOKEN, "DELETE", 405)):
            code, h = get(path, token, method)
            assert code == want and h.get("x-content-type-options") == "nosniff", (path, code, h)
        for path in ("/", "/dashboard"):
            code, h = get(path, None)
            csp = {d.split()[0]: d.split()[1:] for d in h["content-security-policy"].split(";") if d.strip()}
            assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"], csp
            assert csp["frame-ancestors"] == ["'none'"] and "'unsafe-inline'" not in str(csp), csp
            assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer", h


def test_the_page_works_under_its_csp(tmp_path, quiet):
    """The dashboard in headless chromium under the CSP: logs in, polls
    /api/dashboard, draws, and the browser reports no CSP violation."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian package chromium is not installed (make test installs it)"
    with InProcess(write_config(tmp_path)) as gw, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            messages = []
            page.on("console", lambda m: messages.append(m.text))
            page.add_init_script("document.addEventListener('securitypolicyviolation', e =>"
                                 " console.log('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
            page.goto("http://127.0.0.1:%d/" % gw.port)
            page.wait_for_selector("#login:not([hidden])", timeout=8000)
            page.fill("#token", TOKEN)
            page.click("#login button")
            page.wait_for_selector("#app:not([hidden])", timeout=8000)
            # (no wait_for_function: Playwright evaluates its predicate with eval, which the CSP forbids)
            page.wait_for_selector("#chart svg", timeout=8000)
            # the stylesheet applies (style-src 'self')
            assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"
            page.wait_for_timeout(1500)  # a poll or two
            assert not [m for m in messages if "Content Security Policy" in m or "CSP violation" in m], messages
        finally:
            browser.close()


def test_the_tools_reach_an_https_gateway_with_a_ca_file(tmp_path, pki, quiet):
    with InProcess(_tls_conf(tmp_path, pki)) as gw:
        base = "https://127.0.0.1:%d" % gw.port
        env = dict(os.environ, HCP_TOKEN=TOKEN)
        env.pop("HCP_CACERT", None)
        elsewhere = tmp_path / "elsewhere"  # no hall.toml here: --api and $HCP_TOKEN say it all
        elsewhere.mkdir()

        def run(*extra, **env_extra):
            return subprocess.run([HCP, "tool", "list", "--json", "--api", base, *extra], capture_output=True,
                                  text=True, timeout=60, env=dict(env, **env_extra), cwd=elsewhere)

        ok = run("--cacert", str(pki / "ca.pem"))
        assert ok.returncode == 0 and json.loads(ok.stdout) == [], ok.stderr
        ok = run(HCP_CACERT=str(pki / "ca.pem"))
        assert ok.returncode == 0 and json.loads(ok.stdout) == [], ok.stderr
        # A certificate problem: one line that says so, no traceback.
        for bad in (run(), run("--cacert", str(pki / "other-ca.pem"))):
            err = bad.stderr.strip()
            assert bad.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
            assert "certificate" in err and "--cacert" in err, err
        bad = run("--cacert", str(tmp_path / "missing.pem"))
        assert bad.returncode != 0 and "Traceback" not in bad.stderr and "missing.pem" in bad.stderr, bad.stderr


def test_hcp_gateway_commands_reach_their_own_https_gateway(tmp_path, pki, quiet):
    """`hcp gateway status` on the gateway's machine (gateway/client.py
    Client.of_config) trusts the certificate its config names, pinned, on
    a wildcard listen reached over loopback; a $HCP_CACERT that did not
    issue it is one line naming the certificate, exit 1."""
    conf = _tls_conf(tmp_path, pki, listen="0.0.0.0:%d" % free_port())
    os.chmod(conf, 0o600)
    env = dict(os.environ)
    env.pop("HCP_CACERT", None)

    def status(**env_extra):
        return subprocess.run([HCP, "gateway", "status", "-c", str(conf)], capture_output=True, text=True,
                              timeout=60, env=dict(env, **env_extra))

    with InProcess(conf):
        ok = status()
        assert ok.returncode == 0 and json.loads(ok.stdout)["session"], ok.stderr
        ok = status(HCP_CACERT=str(pki / "ca.pem"))
        assert ok.returncode == 0 and json.loads(ok.stdout)["session"], ok.stderr
        bad = status(HCP_CACERT=str(pki / "other-ca.pem"))
        err = bad.stderr.strip()
        assert bad.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "certificate" in err and "not trusted" in err and "$HCP_CACERT" in err, err
