"""`hcp proto` as a technician uses it: real processes, real pipes."""

import json
import pathlib
import random
import subprocess
import sys

from protocol import messages
from protocol.examples import EXAMPLES, TEST_KEY

HCP = [str(pathlib.Path(sys.executable).parent / "hcp")]


def run(args, data=b"", check=True):
    proc = subprocess.run(HCP + args, input=data, capture_output=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_examples_encode_decode_reproduces_examples():
    ex = run(["proto", "examples"]).stdout
    assert len(ex.splitlines()) == len(EXAMPLES)
    frames = run(["proto", "encode"], ex).stdout
    assert frames.count(b"\x00") == len(EXAMPLES)
    assert run(["proto", "decode"], frames).stdout == ex


def test_round_trip_with_key_and_tag_checks():
    key = TEST_KEY.hex()
    ex = run(["proto", "examples"]).stdout
    frames = run(["proto", "encode", "--key", key], ex).stdout
    assert run(["proto", "decode", "--key", key], frames).stdout == ex
    # Without the key the tags are shown as unchecked, never silently trusted.
    lines = [json.loads(x) for x in run(["proto", "decode"], frames).stdout.splitlines()]
    assert all(obj["tag"] == "unverified" for obj in lines)
    # With another key every frame is reported as a bad tag.
    other = (bytes(31) + b"\x01").hex()
    lines = [json.loads(x) for x in run(["proto", "decode", "--key", other], frames).stdout.splitlines()]
    assert [o["error"] for o in lines] == ["badtag"] * len(EXAMPLES)


def test_decode_from_file(tmp_path):
    cap = tmp_path / "capture.bin"
    cap.write_bytes(b"".join(messages.encode(e) for e in EXAMPLES[:3]))
    out = run(["proto", "decode", str(cap)]).stdout.splitlines()
    assert [json.loads(x)["type"] for x in out] == [e["type"] for e in EXAMPLES[:3]]


def test_decode_random_input_never_tracebacks():
    rng = random.Random(20261124)
    good = b"".join(messages.encode(e) for e in EXAMPLES)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000))) for _ in range(4)]
    noisy = bytearray(good)
    for _ in range(40):
        noisy[rng.randrange(len(noisy))] ^= 1 << rng.randrange(8)
    blobs += [bytes(noisy), b"\x01" * 5000 + b"\x00", b"\xff" * 3000]
    for blob in blobs:
        proc = run(["proto", "decode"], blob)
        assert b"Traceback" not in proc.stderr
        for line in proc.stdout.splitlines():
            obj = json.loads(line)
            assert "type" in obj or "error" in obj
        # Every frame is either decoded or reported: one line per delimited
        # packet (empty packets are idle line; over-long ones are reported as
        # "long"), plus one for a trailing partial frame.
        packets = [p for p in blob.split(b"\x00")[:-1] if p]
        trailing = 1 if not blob.endswith(b"\x00") else 0
        assert len(proc.stdout.splitlines()) == len(packets) + trailing


def test_encode_reports_bad_lines():
    data = b'{"type": "cancel", "invitation": "A"}\nnot json\n{"type": "bogus"}\n'
    proc = run(["proto", "encode"], data, check=False)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "line 2" in err and "line 3" in err and "Traceback" not in err
    assert proc.stdout.count(b"\x00") == 1


def test_bad_key_is_a_clear_error():
    proc = run(["proto", "decode", "--key", "zz"], b"", check=False)
    assert proc.returncode == 2 and b"must be hex" in proc.stderr


def test_every_command_has_help():
    from click.testing import CliRunner

    from tools.cli import main

    runner = CliRunner()

    def walk(cmd, path):
        res = runner.invoke(main, path + ["--help"])
        assert res.exit_code == 0, (path, res.output)
        assert (cmd.help or "").strip(), "no help text: hcp " + " ".join(path)
        for name in getattr(cmd, "list_commands", lambda ctx: [])(None):
            walk(cmd.get_command(None, name), path + [name])

    walk(main, [])


def test_protocol_readme_bytes_match_the_encoder():
    # The worked examples in protocol/README.md are the encoder's real output.
    from protocol import cobs, hmac256

    readme = (pathlib.Path(__file__).resolve().parent.parent / "protocol" / "README.md").read_text()
    flat = " ".join(readme.split())
    event = EXAMPLES[1]
    wire = messages.encode(event)
    assert wire.hex(" ") in flat
    raw = cobs.decode(wire[:-1])
    block = readme.split("Before COBS (47 bytes):")[1].split("```")[1]
    listed = ""
    for line in block.strip().splitlines():
        for tok in line.split():
            if len(tok) != 2 or not all(c in "0123456789abcdef" for c in tok):
                break  # the annotation starts
            listed += tok
    assert bytes.fromhex(listed) == raw and len(raw) == 47
    tag = cobs.decode(messages.encode(event, hmac256.Key(TEST_KEY))[:-1])[-12:-4]
    assert tag.hex(" ") in flat
    assert messages.encode(EXAMPLES[8]).hex(" ") in flat
