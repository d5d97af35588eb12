"""The hall broker's configuration, written by `hcp gateway broker-config`.

A Mosquitto (2.0) that nobody on the hall network can use without being
known (docs/security.md):

- one TLS listener (TLS 1.2+), with a certificate from a CA made for the
  hall (or the admin's own files);
- no anonymous clients: a user and password for the gateway, one for each
  device (its device id is its user name), one for each reader (the
  platform's consumer of the records, a monitoring tool);
- an ACL: a device may publish only on its own up topic and read only its
  own down topic; only the gateway reads every up topic and writes the down,
  state, availability and alert topics; readers read what they were given;
- a packet size cap, so no client can make the broker or the gateway hold a
  200 MB message.

Everything lands in one directory, secrets 0600 and the directory 0700:

    mosquitto.conf   include it from /etc/mosquitto/conf.d, or run mosquitto -c
    passwd, acl      the users (PBKDF2-SHA512, Mosquitto's "$7$") and their topics
    ca.crt ca.key    the hall CA (kept: a second run re-uses it and every password)
    server.crt server.key
    credentials.toml every user's password, for the technician's tools
    gateway.password the gateway's password alone, for [mqtt] password_file

    written = write(cfg, "broker/", hosts=["gw.hall.local"], devices=["EV-1"])
"""

import base64
import datetime
import hashlib
import ipaddress
import os
import pathlib
import secrets
import socket
import sqlite3
import tomllib

from gateway.errors import GatewayError
from gateway.files import write_private

PBKDF2_ROUNDS = 101  # Mosquitto's own default for "$7$"
CERT_DAYS = 3650
MIN_PACKET = 64 * 1024


class BrokerConfigError(GatewayError):
    """The broker's configuration could not be written; the message says why."""


# -- secrets ----------------------------------------------------------------
def password_hash(password, salt=None, rounds=PBKDF2_ROUNDS):
    """A Mosquitto password-file hash ("$7$": PBKDF2-SHA512, 12-byte salt)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return "$7$%d$%s$%s" % (rounds, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def _toml_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


# -- certificates -------------------------------------------------------------
def _ca(out):
    """The hall CA in `out` (made if absent): (certificate, private key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    crt, key = out / "ca.crt", out / "ca.key"
    if crt.exists() and key.exists():
        try:
            return (x509.load_pem_x509_certificate(crt.read_bytes()),
                    serialization.load_pem_private_key(key.read_bytes(), None))
        except (ValueError, TypeError) as err:
            raise BrokerConfigError("cannot read the hall CA in %s: %s (move ca.crt/ca.key away to make "
                                    "a new one)" % (out, err)) from err
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hcp hall CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pk.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(pk, hashes.SHA256()))
    write_private(key, pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, pk


def _server_cert(out, ca_cert, ca_key, hosts):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    pk = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(pk.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(out / "server.key", pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (out / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# -- users and topics -------------------------------------------------------------
def provisioned_devices(db_path):
    """Device ids the gateway's database holds a key for (none if no database yet)."""
    if not db_path or not os.path.exists(db_path):
        return []
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
        try:
            return [r[0] for r in conn.execute("SELECT device_id FROM devices WHERE key IS NOT NULL"
                                               " ORDER BY device_id")]
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise BrokerConfigError("cannot read the devices of %s: %s" % (db_path, err)) from err


def _old_credentials(out):
    path = out / "credentials.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BrokerConfigError("cannot read %s: %s (move it away to make new passwords)" % (path, err)) from err


def _mqtt_upstreams(cfg):
    """The settings each MQTT upstream runs on (the schema's defaults filled in)."""
    from gateway.settings import upstream_settings

    return [(up.name, upstream_settings("mqtt", up.name, up.settings)) for up in cfg.upstreams if up.kind == "mqtt"]


def _records_topics(cfg):
    """The topics the gateway's MQTT upstreams publish on."""
    return [s["topic"].format(client_id=s.get("client_id") or "", name=name) for name, s in _mqtt_upstreams(cfg)]


def _max_packet(cfg):
    return max([MIN_PACKET] + [int(s["max_payload"]) + 1024 for _, s in _mqtt_upstreams(cfg)])


def acl_text(prefix, hall, gateway_user, readers, records_topics):
    base = "%s/%s" % (prefix, hall)
    lines = ["# written by hcp gateway broker-config: who may use which topic", "",
             "# the gateway: every device's up topic, and what it publishes",
             "user %s" % gateway_user,
             "topic read %s/dev/+/up" % base,
             "topic write %s/dev/+/down" % base,
             "topic readwrite %s/dev/+/availability" % base,
             "topic readwrite %s/dev/+/state" % base,
             "topic readwrite %s/gateway/#" % base,
             "topic readwrite %s/alert/#" % base]
    lines += ["topic write %s" % t for t in records_topics]
    for name, filters in sorted(readers.items()):
        lines += ["", "user %s" % name] + ["topic read %s" % f for f in filters]
    lines += ["", "# every device (its user name is its device id): its own topics only",
              "pattern write %s/dev/%%u/up" % base,
              "pattern read %s/dev/%%u/down" % base, ""]
    return "\n".join(lines)


def conf_text(out, port, bind, max_packet):
    out = pathlib.Path(out).resolve()
    return "\n".join([
        "# written by hcp gateway broker-config (docs/security.md). Files next to this one.",
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file %s" % (out / "passwd"),
        "acl_file %s" % (out / "acl"),
        "max_packet_size %d" % max_packet,
        "# A device's ACK is one small QoS 1 message: no Nagle delay (~40 ms) for it.",
        "set_tcp_nodelay true",
        "",
        "listener %d %s" % (port, bind),
        "cafile %s" % (out / "ca.crt"),
        "certfile %s" % (out / "server.crt"),
        "keyfile %s" % (out / "server.key"),
        "tls_version tlsv1.2",
        "",
    ])


def write(cfg, out, hosts=(), port=8883, bind="0.0.0.0", devices=(), readers=None):
    """Write the broker's configuration for the gateway config `cfg` into
    `out`; returns {"conf", "ca", "users", "credentials", "gateway_user"}.
    devices: more device ids beside the provisioned ones; readers: {user:
    [topic filters]}. Existing CA and passwords are kept."""
    out = pathlib.Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
    except OSError as err:
        raise BrokerConfigError("cannot use %s: %s" % (out, err.strerror or err)) from err
    prefix = cfg.mqtt.topic_prefix if cfg.mqtt is not None else "hcp"
    gateway_user = (cfg.mqtt.username if cfg.mqtt is not None and cfg.mqtt.username
                    else "hcp-gw-%s" % cfg.hall.id)
    readers = {k: list(v) for k, v in (readers or {}).items()}
    device_ids = sorted(set(provisioned_devices(cfg.db_path)) | set(devices))
    taken = {gateway_user} | set(readers)
    clash = sorted(taken & set(device_ids)) + ([gateway_user] if gateway_user in readers else [])
    if clash:
        raise BrokerConfigError("user name(s) used twice (devices, readers, the gateway): %s" % ", ".join(clash))
    old = _old_credentials(out)

    def pw(section, name):
        got = old.get(section, {})
        got = got.get(name) if section != "gateway" else got
        if isinstance(got, dict) and isinstance(got.get("password"), str) and got.get("password"):
            return got["password"]
        return secrets.token_urlsafe(24)

    gw_pw = pw("gateway", None)
    dev_pw = {d: pw("devices", d) for d in device_ids}
    rd_pw = {r: pw("readers", r) for r in readers}
    try:
        ca_cert, ca_key = _ca(out)
        hosts = list(hosts) or [socket.gethostname(), "localhost", "127.0.0.1"]
        _server_cert(out, ca_cert, ca_key, hosts)
        users = [(gateway_user, gw_pw)] + sorted(rd_pw.items()) + sorted(dev_pw.items())
        write_private(out / "passwd", "".join("%s:%s\n" % (u, password_hash(p)) for u, p in users))
        write_private(out / "acl", acl_text(prefix, cfg.hall.id, gateway_user, readers, _records_topics(cfg)))
        creds = ["# every user of the hall broker and its password: keep this file secret", "",
                 "[gateway]", "username = %s" % _toml_str(gateway_user), "password = %s" % _toml_str(gw_pw), ""]
        for r, p in sorted(rd_pw.items()):
            creds += ["[readers.%s]" % _toml_str(r), "password = %s" % _toml_str(p),
                      "topics = [%s]" % ", ".join(_toml_str(f) for f in readers[r]), ""]
        for d, p in sorted(dev_pw.items()):
            creds += ["[devices.%s]" % _toml_str(d), "password = %s" % _toml_str(p), ""]
        write_private(out / "credentials.toml", "\n".join(creds))
        write_private(out / "gateway.password", gw_pw + "\n")
        conf = conf_text(out, port, bind, _max_packet(cfg))
        (out / "mosquitto.conf").write_text(conf, encoding="utf-8")
    except OSError as err:
        raise BrokerConfigError("cannot write the broker's files in %s: %s" % (out, err.strerror or err)) from err
    return {"conf": str(out / "mosquitto.conf"), "ca": str(out / "ca.crt"), "gateway_user": gateway_user,
            "gateway_password_file": str(out / "gateway.password"), "credentials": str(out / "credentials.toml"),
            "users": len(users), "devices": device_ids, "port": port, "hosts": hosts}
