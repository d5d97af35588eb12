"""`hcp sim fleet --fast`: 200 in-process evaluators (the firmware's logic
modules under CPython: rating, journal on a real file, buttons, orders) on
the real gateway process's MQTT ingest, the real broker and both upstream
receivers, with a gateway kill and an upstream outage, the invariants of
docs/design.md §6 checked through the real command line."""

import json
import pathlib
import subprocess
import sys
import time

HCP = str(pathlib.Path(sys.executable).parent / "hcp")


def test_fast_fleet_of_200_keeps_every_invariant(tmp_path):
    args = [HCP, "sim", "fleet", "--fast", "--devices", "200", "--ratings", "400", "--seed", "7",
            "--faults", "gateway-kill,upstream-outage", "--max-seconds", "50",
            "--workdir", str(tmp_path / "hall"), "--json"]
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = {k: report[k] for k in ("invited", "thanked", "upstream_unique", "lost", "invented",
                                      "upstream_duplicates", "faults_injected", "seconds", "ok")}
    print(json.dumps(summary, ensure_ascii=False), "%.1f s" % took)
    assert report["fast"] is True
    assert report["lost"] == 0 and report["invented"] == 0, summary
    assert report["upstream_unique"] == report["thanked"], summary
    assert report["batches_ok"] and report["one_code_one_account"], summary
    for kind in ("gateway-kill", "upstream-outage"):
        assert report["faults_injected"].get(kind, 0) >= 1, summary
    assert report["invited"] >= 400 and report["thanked"] >= 300, summary
    assert report["ok"] and proc.returncode == 0, (summary, proc.stderr[-3000:])
    assert took < 60, summary
    # The devices really were in-process: their journals are files in the
    # workdir, and no MicroPython process ran.
    assert (tmp_path / "hall" / "devices" / "dev00000" / "journal").stat().st_size > 0


def test_fast_refuses_line_noise(tmp_path):
    proc = subprocess.run([HCP, "sim", "fleet", "--fast", "--devices", "2", "--faults", "line-noise",
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "line-noise does not apply to --fast" in proc.stderr
