"""The gateway's HTTP API from the other side: the one client of it.

`hcp gateway invite/cancel/status/devices`, the technician's `hcp tool`,
the simulated halls and the benchmarks all talk to a gateway through this
(reference of the API: gateway/README.md).

    api = Client("http://127.0.0.1:8780", token)
    status, obj = api.call("GET", "/api/status")     # status 0: no answer (why: api.error)
    obj = api.need("POST", "/api/invitations", {...})  # or ClientError, one line for a person
    api = Client.of_config(cfg)                      # the gateway of a config, from its own machine

https: the server's certificate is checked against `cafile` (or
$HCP_CACERT; else the system's CAs). A certificate in that file is trusted
as it is (VERIFY_X509_PARTIAL_CHAIN): the gateway's own certificate may be
pinned, not only the CA that issued it. Only the standard library: a
technician's machine needs nothing else to reach a gateway.
"""

import json
import os
import ssl
import time
import urllib.error
import urllib.request

TIMEOUT_S = 10.0


class ClientError(RuntimeError):
    """The gateway did not do what was asked; str() is one line for a
    person. `status`: the HTTP status, 0 when nothing answered; `body`: the
    gateway's JSON answer (e.g. "current" on a refused binding), or None."""

    def __init__(self, message, status=0, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    """`base`: "http://HOST:PORT" or "https://HOST:PORT". `hints`: how the
    person running the command fixes a problem, named in the errors of
    need(): "ca" (where a CA file is given), "api" (where the address is),
    "token" (where the token is)."""

    def __init__(self, base, token, cafile=None, check_hostname=True, timeout=TIMEOUT_S, hints=None):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.hints = dict({"ca": "$HCP_CACERT", "api": None, "token": None}, **(hints or {}))
        self.error = None  # why the last call got no answer (ssl.SSLCertVerificationError: the certificate)
        self.context = None
        if self.base.lower().startswith("https:"):
            cafile = cafile or os.environ.get("HCP_CACERT") or None
            try:
                self.context = ssl.create_default_context(cafile=cafile)
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError: not PEM
                raise ClientError("cannot use the CA file %s: %s"
                                  % (cafile, getattr(err, "strerror", None) or err)) from err
            if cafile:  # a certificate in the file is trusted as it is (the gateway's own one, pinned)
                self.context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            self.context.check_hostname = check_hostname

    @classmethod
    def of_config(cls, cfg, **kw):
        """The gateway a loaded config (gateway.config) describes, asked from
        its own machine: a wildcard listen is reached on loopback; with
        [http] tls_cert, over https, trusting $HCP_CACERT or that very
        certificate, whatever name it carries (it is the one the config names)."""
        host = cfg.http_host if cfg.http_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        tls = bool(cfg.tls_cert)
        if tls:
            kw.setdefault("cafile", os.environ.get("HCP_CACERT") or cfg.tls_cert)
            kw.setdefault("check_hostname", False)
        return cls("%s://%s:%d" % ("https" if tls else "http", host, cfg.http_port), cfg.token, **kw)

    def call(self, method, path, body=None, timeout=None):
        """(status, json); status 0 when the gateway does not answer (why: self.error)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token is not None:  # (None: a request without the token, as a test makes one)
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        self.error = None
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.context) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                return err.code, json.loads(err.read() or b"null")
            except ValueError:
                return err.code, None
        except urllib.error.URLError as err:
            self.error = err.reason
            return 0, None
        except (OSError, ValueError) as err:
            self.error = err
            return 0, None

    def need(self, method, path, body=None, timeout=None):
        """The answer of a request that must succeed (2xx), else ClientError."""
        status, obj = self.call(method, path, body, timeout)
        if 200 <= status < 300:
            return obj
        raise ClientError(self.explain(status, obj), status, obj)

    def explain(self, status, obj):
        """Why a call with this outcome failed, in one line."""
        err, hint = self.error, self.hints
        if status == 0 and isinstance(err, ssl.SSLCertVerificationError):
            return ("the gateway's certificate at %s is not trusted: %s (give the CA that issued it with %s)"
                    % (self.base, err.verify_message or err, hint["ca"]))
        if status == 0 and isinstance(err, ssl.SSLError):
            return ("TLS with the gateway at %s failed: %s (does it serve https? its CA: %s)"
                    % (self.base, err, hint["ca"]))
        if status == 0:
            return ("the gateway does not answer at %s: %s (is `hcp gateway run` up?%s)"
                    % (self.base, err, " %s" % hint["api"] if hint["api"] else ""))
        if status == 401:
            return "the gateway refused the token%s" % (" (%s)" % hint["token"] if hint["token"] else "")
        text = obj.get("error") if isinstance(obj, dict) else None
        return "the gateway refused (HTTP %d): %s" % (status, text or "no reason given")

    def wait_up(self, timeout=20.0):
        """True once GET /api/status answers 200, False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call("GET", "/api/status", timeout=2.0)[0] == 200:
                return True
            time.sleep(0.05)
        return False
