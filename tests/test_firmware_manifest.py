"""firmware/manifest.py (the MicroPython build manifest that freezes the
firmware into a board image) names exactly the device modules `hcp tool
flash` ships for a board (tools/flash.sources()), less the sim board's HAL
and main.py, and each exists; the manifest itself is never flashed."""

import pathlib

from tools import flash

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _read_manifest():
    calls = []
    env = {
        "include": lambda path: calls.append(("include", path)),
        "package": lambda name, files=None, base_path=".", opt=None: calls.append(("package", name, files,
                                                                                     base_path)),
        "module": lambda *a, **k: calls.append(("module",) + a),
        "freeze": lambda *a, **k: calls.append(("freeze",) + a),
        "require": lambda *a, **k: calls.append(("require",) + a),
    }
    exec(compile((ROOT / "firmware" / "manifest.py").read_text(), "manifest.py", "exec"), env)
    return calls


def test_the_manifest_freezes_what_a_board_runs():
    calls = _read_manifest()
    assert ("include", "$(PORT_DIR)/boards/manifest.py") in calls
    frozen = set()
    for c in calls:
        if c[0] == "package":
            _, name, files, base = c
            assert base == ".."  # relative to firmware/: the repository
            for f in files:
                assert (ROOT / name / f).is_file(), f
                frozen.add("%s/%s" % (name, f[:-3] + ".mpy"))
        else:
            assert c[0] == "include", c
    shipped = {rel for rel, _ in flash.sources()} - {"main.py", "firmware/hal_sim.mpy"}
    assert frozen == shipped
    assert "firmware/manifest.mpy" not in {rel for rel, _ in flash.sources()}
