"""Security review, finding 8: `hcp tool flash --dir` removes the code files
of the previous flash that the new one no longer has, as listed in the old
`code.json` of the target. That manifest is not trusted: only a relative,
normalised path naming a code file this tool writes (main.py, board.json,
protocol/*, firmware/*), with no symlink on the way out of the target, is
removed; anything else is ignored with a progress note."""

import hashlib
import json

import pytest

from tools import flash


def _bundle(tmp_path):
    """A small built bundle (install() does not care how it was built)."""
    bundle = tmp_path / "bundle"
    files = {}
    for rel, data in (("main.py", b"import app\n"), ("board.json", b"{}"), ("protocol/tx.mpy", b"M\x06tx"),
                      ("firmware/app.mpy", b"M\x06app")):
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()
    return bundle, files


def test_old_manifest_cannot_remove_anything_outside_the_code_files(tmp_path):
    bundle, files = _bundle(tmp_path)
    dev = tmp_path / "dev"
    (dev / "firmware").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    absolute = tmp_path / "elsewhere" / "abs.txt"
    outside = tmp_path / "outside"
    for p in (victim, absolute, outside / "old.mpy", outside / "x.py"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("keep me")
    # A directory of the target that is a symlink out of it: its name looks
    # like code, what it leads to is not the device's.
    (dev / "lib").symlink_to(outside, target_is_directory=True)
    # A code-looking file that is a symlink to a file outside.
    (dev / "firmware" / "link.mpy").symlink_to(outside / "x.py")
    # The device's state, named in the manifest: never code.
    (dev / "device.json").write_text('{"key": "secret"}')
    (dev / "journal").write_bytes(b"\x01journal")
    (dev / "firmware" / "old.mpy").write_bytes(b"stale code")  # a real stale code file
    planted = {
        "../victim.txt": "x", str(absolute): "x", "lib/old.mpy": "x", "lib/x.py": "x",
        "firmware/link.mpy": "x", "firmware/../../victim.txt": "x", "protocol/../device.json": "x",
        "device.json": "x", "journal": "x", "./main.py": "x", "firmware//old.mpy": "x",
        "firmware\\..\\..\\victim.txt": "x", "firmware/sub/a.mpy": "x", "firmware/old.mpy": "x",
        "main.py": "x",
    }
    (dev / "code.json").write_text(json.dumps(planted))
    progress = []
    assert flash.install(bundle, files, dev, progress=progress.append) == files

    for p in (victim, absolute, outside / "old.mpy", outside / "x.py"):
        assert p.read_text() == "keep me", p
    assert (dev / "lib").is_symlink() and (dev / "firmware" / "link.mpy").is_symlink()
    assert (dev / "device.json").read_text() == '{"key": "secret"}'
    assert (dev / "journal").read_bytes() == b"\x01journal"
    assert not (dev / "firmware" / "old.mpy").exists()  # the one legitimate removal
    assert json.loads((dev / "code.json").read_text()) == files
    notes = "\n".join(progress)
    assert "remove  firmware/old.mpy" in notes
    for rel in ("../victim.txt", str(absolute), "lib/old.mpy", "firmware/link.mpy", "device.json",
                "journal", "firmware/sub/a.mpy"):
        assert "ignore  %r" % rel in notes, rel


@pytest.mark.parametrize("text", ["not json {", "[\"../victim.txt\"]", "\"../victim.txt\"", "7", "null",
                                  "\udcff"])
def test_malformed_manifest_is_an_empty_one(tmp_path, text):
    bundle, files = _bundle(tmp_path)
    dev = tmp_path / "dev"
    dev.mkdir()
    (tmp_path / "victim.txt").write_text("keep me")
    (dev / "code.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert flash.install(bundle, files, dev) == files
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    assert json.loads((dev / "code.json").read_text()) == files


def test_new_files_are_not_written_through_a_symlink_out_of_the_target(tmp_path):
    bundle, files = _bundle(tmp_path)
    dev = tmp_path / "dev"
    dev.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dev / "protocol").symlink_to(outside, target_is_directory=True)
    with pytest.raises(flash.FlashError, match="protocol.*outside"):
        flash.install(bundle, files, dev)
    assert list(outside.iterdir()) == [] and not (dev / "main.py").exists()


def test_a_code_looking_path_through_a_symlinked_folder_is_not_removed(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "main.py").write_bytes(b"pass\n")
    files = {"main.py": hashlib.sha256(b"pass\n").hexdigest()}
    dev = tmp_path / "dev"
    dev.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "old.mpy").write_text("keep me")
    (dev / "protocol").symlink_to(outside, target_is_directory=True)
    (dev / "code.json").write_text(json.dumps({"protocol/old.mpy": "x"}))
    progress = []
    flash.install(bundle, files, dev, progress=progress.append)
    assert (outside / "old.mpy").read_text() == "keep me"
    assert "ignore  'protocol/old.mpy'" in "\n".join(progress)
