"""Every benchmark runs through `hcp bench NAME --json` (the command line
hands each run() a progress callback), and the forward and drain benchmarks
do their real work at a small size: Mosquitto, the MQTT forwarder, the
outbox, a bare paho loop as the reference."""

import inspect
import json
import pathlib
import subprocess
import sys

import pytest

from tools.bench_cli import BENCHES

HCP = str(pathlib.Path(sys.executable).parent / "hcp")


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_every_bench_takes_what_the_cli_passes(name):
    import importlib

    module = BENCHES[name][0]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:  # the peer needs the optional `bench` extra
        assert name == "peer", err
        return
    assert "progress" in inspect.signature(mod.run).parameters, module


@pytest.mark.parametrize("name,params", [
    ("forward", ["rows=3000", "paho_messages=2000"]),
    ("drain", ["rows=5000", "live_rate=20"]),
])
def test_forward_and_drain_run_small(name, params):
    args = [HCP, "bench", name, "--json"]
    for p in params:
        args += ["-p", p]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["value"] > 0 and res["reference"] > 0 and res["ratio"] > 0, res
    assert res["params"]["rows"] == int(params[0].split("=")[1]), res
