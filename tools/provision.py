"""Provisioning: the device key, made by the gateway, written into the device
over its USB cable — the one place a technician has the device in hand
(docs/link.md "Keys"). The key never travels on the device's link (serial
line, Wi-Fi, the hall's MQTT broker), so nobody listening there can learn it.

    device_id = provision_dir(api, "/path/to/flash")     # a sim device
    device_id = provision_port(api, "/dev/ttyACM0", "esp32")   # a real board

`api` is the gateway's API client (gateway.client.Client). The gateway answers
`POST /api/devices/<id>/key` only over TLS or from its own machine; this
module refuses to ask over plain HTTP to another host as well.

The key file on the device holds 64 hex digits (firmware/store.py `key()`);
on a host directory it is created 0600 in a directory made 0700.
"""

import json
import os
import pathlib
import re
import secrets
import tempfile
import urllib.parse

from gateway.client import ClientError
from gateway.config import loopback
from gateway.files import write_private

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ProvisionError(RuntimeError):
    """Provisioning did not happen; the message says why."""


def check_transport(base, allow_plain=False):
    """Refuse to fetch a key over plain HTTP from another machine."""
    u = urllib.parse.urlsplit(base)
    if u.scheme == "https" or allow_plain:
        return
    if not loopback(u.hostname or ""):
        raise ProvisionError("the gateway at %s is not on this machine and not https: the new device key "
                             "would cross the hall network in clear. Run the tool on the gateway host, or "
                             "give the gateway a certificate ([http] tls_cert) and use https://" % base)


def request_key(api, device_id):
    """A new key for device_id from the gateway: (raw key, reprovisioned)."""
    check_transport(api.base)
    try:
        body = api.need("POST", "/api/devices/%s/key" % device_id, {})
    except ClientError as err:
        raise ProvisionError("cannot provision %s: %s" % (device_id, err)) from err
    try:
        key = bytes.fromhex(body["key"])
    except (KeyError, TypeError, ValueError) as err:
        raise ProvisionError("the gateway's answer holds no key") from err
    if len(key) != 32:
        raise ProvisionError("the gateway's key is %d bytes, not 32" % len(key))
    return key, bool(body.get("reprovisioned"))


# -- a sim device: its flash is a directory ---------------------------------
def new_sim_id():
    """An id as the sim board's firmware makes one at first boot (firmware/hal_sim.py)."""
    return "SIM-%s" % secrets.token_hex(4).upper()


def identity_dir(directory, device_id=None):
    """The device id in directory/device.json; written first if the device
    never booted (device_id, or a new sim id)."""
    d = pathlib.Path(directory)
    path = d / "device.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("device_id")
    except FileNotFoundError:
        found = None
    except (OSError, ValueError, AttributeError) as err:
        raise ProvisionError("cannot read %s: %s" % (path, err)) from err
    if found:
        if not isinstance(found, str) or not _ID.match(found):
            raise ProvisionError("%s holds a device id the wire refuses: %r" % (path, found))
        if device_id and device_id != found:
            raise ProvisionError("%s is device %s, not %s" % (directory, found, device_id))
        return found
    device_id = device_id or new_sim_id()
    if not _ID.match(device_id):
        raise ProvisionError("device id %r: 1-32 characters of A-Z a-z 0-9 - _" % device_id)
    secure_dir(d)
    write_private(path, json.dumps({"device_id": device_id}).encode())
    return device_id


def secure_dir(d):
    """The device's flash directory, made (or tightened to) 0700: it holds its key."""
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)


def write_key_dir(directory, key):
    secure_dir(directory)
    write_private(pathlib.Path(directory) / "key", key.hex().encode())


def provision_dir(api, directory, device_id=None):
    """Provision the sim device whose flash is `directory`; returns
    (device_id, reprovisioned). A running device takes the key at its next
    boot; until then the gateway still accepts the key it holds."""
    device_id = identity_dir(directory, device_id)
    key, again = request_key(api, device_id)
    write_key_dir(directory, key)
    return device_id, again


# -- a real board, over mpremote ---------------------------------------------
_READ_ID = """
import json
try:
    with open(%(path)r) as f:
        print(json.load(f)['device_id'])
except (OSError, ValueError, KeyError):
    import machine, binascii
    d = 'EV-' + binascii.hexlify(machine.unique_id()).decode().upper()
    with open(%(path)r, 'w') as f:
        json.dump({'device_id': d}, f)
    print(d)
"""


def provision_port(api, port, root="/", mpremote=None):
    """Provision the board on `port` (its USB serial port), whose flash root
    is `root` (boards.toml [<board>.storage] dir), and reset it: it boots
    with its key. Returns (device_id, reprovisioned)."""
    from tools import flash

    run = mpremote or flash._mpremote
    root = root.rstrip("/")
    out = run(port, "exec", _READ_ID % {"path": root + "/device.json"}, timeout=20)
    device_id = out.strip().splitlines()[-1].strip() if out.strip() else ""
    if not _ID.match(device_id):
        raise ProvisionError("the board on %s gave no usable device id (%r)" % (port, device_id))
    key, again = request_key(api, device_id)
    # Through a private temporary file, never on a command line (other users
    # of this machine can read those in /proc).
    with tempfile.TemporaryDirectory(prefix="hcp-key-") as tmp:
        os.chmod(tmp, 0o700)
        path = pathlib.Path(tmp) / "key"
        write_private(path, key.hex().encode())
        run(port, "cp", str(path), ":%s/key.tmp" % root)
    run(port, "exec", "import os\nos.rename(%r, %r)" % (root + "/key.tmp", root + "/key"))
    # The firmware reads its key at boot: the board restarts with it.
    flash.reset_port(port, run)
    return device_id, again
