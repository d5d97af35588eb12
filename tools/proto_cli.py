"""`hcp proto`: a technician's view of the wire, and the contract other checks use.

    hcp proto examples | hcp proto encode | hcp proto decode

reproduces the examples. `decode` never prints a traceback: every frame in
the input comes out as its message or as an {"error": ...} line.
"""

import json
import sys

import click

from gateway.devices.keys import Key
from protocol import jsonform, messages
from protocol.errors import ProtocolError
from protocol.examples import EXAMPLES
from protocol.reader import Reader

_CHUNK = 65536


def _key(ctx, param, value):
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hex, e.g. 64 hex digits for a 32-byte key") from None
    if len(raw) != 32:
        raise click.BadParameter("a device key is 32 bytes (64 hex digits), got %d" % len(raw))
    return Key(raw)


_key_option = click.option(
    "--key", callback=_key, metavar="HEX",
    help="Device key (64 hex digits). encode: tag every frame; decode: require and check tags.")


def _line(obj):
    return json.dumps(obj, ensure_ascii=False)


@click.group()
def proto():
    """Encode, decode and show frames of the wire protocol (protocol/README.md)."""


@proto.command()
def examples():
    """Print one valid example of every message type, one JSON object per line."""
    for ex in EXAMPLES:
        click.echo(_line(jsonform.to_json(ex)))


@proto.command()
@_key_option
def encode(key):
    """Read JSON messages (one per line) on stdin, write their frames to stdout.

    Each line is an object like those of `hcp proto examples`; bytes fields are
    hex. A line that is not a valid message is reported on stderr with its line
    number and skipped; the exit status is then 1.
    """
    out = click.get_binary_stream("stdout")
    bad = 0
    for n, line in enumerate(click.get_text_stream("stdin"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            out.write(messages.encode(jsonform.from_json(obj), key))
        except (ValueError, ProtocolError) as err:
            bad += 1
            click.echo("line %d: %s" % (n, err), err=True)
    out.flush()
    if bad:
        sys.exit(1)


def _decode_stream(stream, key):
    reader = Reader()
    index = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        before = reader.errors.get("long", 0)
        packets = reader.packets(chunk)
        for _ in range(reader.errors.get("long", 0) - before):
            yield {"error": "long", "detail": "frame longer than the protocol allows, dropped"}
        for packet in packets:
            index += 1
            yield _decode_one(packet, key, index)
    if reader._len or reader._overflow:
        yield {"error": "incomplete", "detail": "input ends inside a frame (no 0x00 delimiter)"}


def _decode_one(packet, key, index):
    try:
        fr = messages._frame.decode(packet)
        if key is not None:
            fr.verify(key)
        obj = jsonform.to_json(messages.parse(fr))
        if key is None and fr.tag is not None:
            obj["tag"] = "unverified"
        return obj
    except ProtocolError as err:
        return {"error": err.kind, "detail": err.detail, "frame": index,
                "bytes": packet[:64].hex() + ("..." if len(packet) > 64 else "")}


@proto.command()
@_key_option
@click.argument("file", type=click.File("rb"), default="-")
def decode(key, file):
    """Read raw frames (a capture) from FILE or stdin; print one JSON line per frame.

    A frame that fails a check prints {"error": KIND, "detail": ..., "frame": N,
    "bytes": HEX} and decoding goes on. Without --key, tagged frames decode
    with "tag": "unverified".
    """
    for obj in _decode_stream(file, key):
        click.echo(_line(obj))
