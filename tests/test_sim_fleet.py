"""CI's hall: 20 real-firmware evaluators (the MicroPython VM) on
ptys, a real gateway, Mosquitto and two upstream receivers, every fault kind
injected, and the invariants of docs/design.md §6 checked at the end through the
real command line (`hcp sim fleet --json`)."""

import json
import os
import pathlib
import subprocess
import sys

from simulator.hall import DEFAULT_HEAP

HCP = str(pathlib.Path(sys.executable).parent / "hcp")
# The 64K budget (simulator/hall.py DEFAULT_HEAP); HCP_TEST_HEAP tries another.
HEAP = os.environ.get("HCP_TEST_HEAP", DEFAULT_HEAP)


def test_fleet_of_20_with_every_fault_keeps_every_invariant(tmp_path):
    args = [HCP, "sim", "fleet", "--devices", "20", "--ratings", "200", "--seed", "20261124",
            "--faults", "power-cut,line-noise,gateway-kill,broker-restart,upstream-outage,disk-full",
            "--heap", HEAP, "--max-seconds", "300", "--workdir", str(tmp_path / "hall"), "--json"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = {k: report[k] for k in ("invited", "thanked", "upstream_unique", "lost", "invented",
                                      "upstream_duplicates", "faults_injected", "ok")}
    print(json.dumps(summary, ensure_ascii=False))
    assert report["lost"] == 0 and report["invented"] == 0, summary
    assert report["upstream_unique"] == report["thanked"], summary
    assert report["batches_ok"] and report["one_code_one_account"], summary
    for kind in ("power-cut", "line-noise", "gateway-kill", "broker-restart", "upstream-outage", "disk-full"):
        assert report["faults_injected"].get(kind, 0) >= 1, summary
    assert report["thanked"] >= 100, summary  # the run really rated, faults or not
    # The hall broker ran the config `hcp gateway broker-config` writes (TLS,
    # a user each, the ACL), and the records came through it as well.
    assert report["broker"] == {"kind": "mosquitto", "tls_users_acl": True}, report["broker"]
    assert report["targets"]["mqtt"]["ok"] and report["targets"]["mqtt"]["lost"] == 0, report["targets"]
    assert report["ok"] and proc.returncode == 0, (summary, proc.stderr[-3000:])
