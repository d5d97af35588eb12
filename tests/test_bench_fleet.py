"""`hcp bench fleet` at a tiny size, through the real command line: a hall
of real-firmware evaluators grown in two steps (3, then 6 devices), rated
for a few seconds each, every thanked rating found at both upstream
receivers. Proves the benchmark's JSON shape and that what it measures is
real (processes' memory and CPU read from /proc, ratings counted upstream)."""

import json
import pathlib
import subprocess
import sys

HCP = str(pathlib.Path(sys.executable).parent / "hcp")


def test_fleet_bench_steps_and_zero_loss():
    args = [HCP, "bench", "fleet", "--json", "-p", "steps=3,6", "-p", "seconds=6", "-p", "visit_s=2",
            "-p", "budget_s=60"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    for key in ("name", "value", "unit", "reference", "ratio", "target", "params", "steps", "stopped"):
        assert key in res, key
    assert res["name"] == "fleet"
    assert res["params"]["steps"] == "3,6" and res["params"]["seconds"] == 6
    steps = res["steps"]
    assert [s["devices"] for s in steps] == [3, 6], res["stopped"]
    for s in steps:
        brief = {k: s.get(k) for k in ("devices", "paired", "invited", "thanked", "arrived", "lost", "invented",
                                       "timeouts", "refused", "carried", "why")}
        assert s["paired"] == s["devices"], brief
        assert s["lost"] == {"http": 0, "mqtt": 0} and s["invented"] == {"http": 0, "mqtt": 0}, brief
        assert s["arrived"] == s["thanked"], brief
        assert s["carried"], brief
        # Real processes: a MicroPython VM in a CPython process is megabytes, and the
        # gateway did work while the citizens rated.
        assert 2000 < s["rss_peak_kb_max"] < 200000, brief
        assert s["gateway_cpu_s"] > 0, brief
    # Every step really rated: each device visits about every 2 s for 6 s.
    assert sum(s["thanked"] for s in steps) >= 6, steps
    assert res["value"] == 6 and res["lost"] == 0 and res["invented"] == 0
    assert res["reference"] > res["value"] and 0 < res["ratio"] < 1
