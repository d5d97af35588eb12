"""One HMAC on CPython, one on the device, the same tags: gateway/devices/keys.py
(the standard library's hmac) and protocol/hmac256.py (the device's own,
over hashlib.sha256) against every RFC 4231 HMAC-SHA-256 test vector, and
against each other on keys and messages of every length around the block;
and the gateway, the tools it runs, the benchmarks and the test harness
make their keys with gateway/devices/keys.py."""

import ast
import hashlib
import hmac
import pathlib
import random

import pytest

from gateway.devices.keys import Key
from protocol import hmac256

ROOT = pathlib.Path(__file__).resolve().parent.parent

# RFC 4231 section 4: (key, data, HMAC-SHA-256); test case 5 is truncated to 128 bits.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data."
                    b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("make", [Key, hmac256.Key], ids=["gateway.devices.keys", "protocol.hmac256"])
@pytest.mark.parametrize("key, data, want", RFC4231, ids=["tc%d" % i for i in range(1, 8)])
def test_rfc4231(make, key, data, want):
    k = make(key)
    assert k.mac(data).hex()[:len(want)] == want
    assert k.tag(data) == bytes.fromhex(want)[:8] and k.raw == key


def test_the_two_agree_and_are_the_stdlib_hmac():
    rng = random.Random(4231)
    for n in (1, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200):
        raw = bytes(rng.randrange(256) for _ in range(n))
        ours, device = Key(raw), hmac256.Key(raw)
        for m in (0, 1, 55, 56, 63, 64, 65, 200, 1200):
            msg = bytes(rng.randrange(256) for _ in range(m))
            want = hmac.new(raw, msg, hashlib.sha256).digest()
            assert ours.mac(msg) == device.mac(msg) == want
            assert ours.tag(msg) == device.tag(msg) == want[:8]
    with pytest.raises(ValueError):
        Key(b"")


def _made_with_hmac256(path):
    """Lines of a file that make a protocol.hmac256.Key (`hmac256.Key(` or a
    `Key` imported from protocol.hmac256)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.module == "protocol.hmac256" for a in n.names if a.name == "Key"}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Attribute) and f.attr == "Key" and isinstance(f.value, ast.Name)
                    and f.value.id == "hmac256") or (isinstance(f, ast.Name) and f.id in named):
                out.append(n.lineno)
    return out


# Where the host makes keys: the gateway, the tools, the benchmarks, the
# test harness and the tests of the gateway's side (the protocol's and the
# simulated devices' tests run the device's code, its HMAC included).
HOST = ("gateway/**/*.py", "tools/*.py", "bench/*.py", "tests/support/*.py", "tests/test_gateway_*.py",
        "tests/test_sec_*.py", "tests/test_firmware_device.py", "tests/test_tools_*.py")
# The host-side users of the device's HMAC that remain, each for a reason.
DEVICE_HMAC_ALLOWED = {
    "tools/vectors.py": "writes tests/vectors/protocol.json, which the device's own tests read",
}


def test_the_host_makes_its_keys_with_the_stdlib_hmac():
    files = sorted({p for pattern in HOST for p in ROOT.glob(pattern)})
    assert len(files) > 60
    bad = ["%s:%d" % (p.relative_to(ROOT), line) for p in files for line in _made_with_hmac256(p)
           if p.relative_to(ROOT).as_posix() not in DEVICE_HMAC_ALLOWED]
    assert not bad, "protocol.hmac256.Key on the host (use gateway.devices.keys.Key): %s" % ", ".join(bad)


def test_the_scan_finds_both_spellings(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from protocol import hmac256\nfrom protocol.hmac256 import Key as K\n"
                 "a = hmac256.Key(b'1')\nb = K(b'2')\nfrom gateway.devices.keys import Key\nc = Key(b'3')\n")
    assert _made_with_hmac256(p) == [3, 4]
