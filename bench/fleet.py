"""The fleet (docs/design.md §5: 1,000 real-firmware devices on one machine, zero
loss): the largest hall of simulated evaluators, each the real firmware
(the flashed .mpy bundle under the MicroPython unix port, at the
simulator's heap), that one machine carries with nothing lost.

One SimHall (simulator/hall.py: the gateway process, a broker, the two
upstream receivers, a pty cable per device through one relay thread) grows
in steps: at each step the new evaluators are flashed, powered on, found by
the gateway through its port glob and paired (staff card and QR code), then
every evaluator of the hall is rated for `seconds` by the simulator's own
clerk-and-citizen actors (simulator/fleet.py: 好评, 差评 with reasons,
batches, walk-aways, uninvited presses, stuck buttons; no faults), a visit
every `visit_s` or so per window. After each step the actors stop, the
outbox drains, and what reached both upstream receivers is checked against
what the citizens did (simulator/invariants.py).

A step is *carried* when every new device paired, nothing was lost or
invented at either upstream target, every thanked rating arrived, and the
hall kept up: no invitation refused, no prompt that failed to show within
4 s, no rating whose thanks did not come within 10 s (with no faults
injected, any of these is the machine falling behind). value = the largest
carried step. Stepping stops at the first step that is not carried, when
the next step would not fit in `budget_s`, or when its devices' memory (at
the peak RSS measured so far) would exceed `mem_fraction` of MemAvailable.

Per step: devices, bring-up time, ratings thanked vs arrived upstream, lost,
invented, peak RSS (VmHWM) per device process and its proportional share
(Pss; `micropython` is a console script, a CPython process with the VM
loaded, so most of its RSS is shared libraries), CPU seconds and % of one
core over the rating window of the gateway, the relay thread, all devices
together and this process's actors. Heartbeats at the gateway's default
30 s (the simulator's tests use 2 s; a hall runs 30).

Reference, same run (there is no peer figure): the memory ceiling, the
number of devices that fit in `mem_fraction` of the MemAvailable measured
before the first step, at the memory a device really takes (the larger of
its Pss and what MemAvailable lost per device added at the first step,
if it added 50 or more); ratio = value / ceiling. Beside it: the same ceiling at peak RSS (which counts the
shared libraries once per device: far too low), the CPU ceiling (devices
the cores would carry at the CPU per device measured at the largest carried
step) and the pty ceiling (two ptys per cable, /proc/sys/kernel/pty/max).

    hcp bench fleet [--json] [-p steps=50,100,200,400] [-p seconds=10]
    hcp bench fleet -p steps=100,250,500,750,1000 -p seconds=60 -p budget_s=1200
"""

import os
import random
import shutil
import statistics
import tempfile
import threading
import time

from bench import procstat
from bench.common import Deadline, result

DEFAULTS = {"steps": "50,100,200,400", "seconds": 10, "visit_s": 20, "heartbeat_s": 30, "heap": None,
            "budget_s": 110, "drain_s": 30, "mem_fraction": 0.7, "workers": 4, "seed": 1}
# Before the first step has been measured: docs/design.md §7's ≈ 12 MB per
# `micropython` process, rounded up.
RSS_GUESS_KB = 16 * 1024
BRINGUP_GUESS_S = 0.08  # per device, until a step has measured it
SETTLE_S = 8.0  # actors finishing their visit, drain, teardown share


def _steps(steps):
    if isinstance(steps, int):
        return [steps]
    out = sorted({int(x) for x in str(steps).replace(";", ",").split(",") if x.strip()})
    if not out or out[0] < 1:
        raise ValueError("steps must be positive device counts, e.g. 50,100,200")
    return out


class Tally:
    """The ledger and counters the actors share, across steps."""

    def __init__(self):
        self.ledger = []
        self.counts = {"lock": threading.Lock()}
        self.cases = {}  # window index -> cases used so far (case numbers stay unique)

    def count(self, key):
        return self.counts.get(key, 0)

    def check(self, hall):
        """invariants.check against each upstream target's arrivals."""
        from simulator import invariants, upstream

        with self.counts["lock"]:
            ledger = list(self.ledger)
        return {name: invariants.check(ledger, upstream.records(rec.db), uninvited_pressed=self.count("uninvited"))
                for name, rec in hall.receivers.items()}


def _carried_check(per_target):
    return all(r["lost"] == 0 and r["invented"] == 0 and r["upstream_unique"] == r["thanked"]
               for r in per_target.values())


def _drain(hall, tally, timeout):
    """Until every thanked rating has reached both upstream targets (or timeout)."""
    t0 = time.monotonic()
    while True:
        per_target = tally.check(hall)
        if _carried_check(per_target) or time.monotonic() - t0 > timeout:
            return per_target, time.monotonic() - t0
        time.sleep(0.5)


class Cpu:
    """CPU seconds of the hall's processes between two snapshots."""

    def __init__(self, hall):
        self.hall = hall
        self.relay_tid = hall.relay._thread.native_id
        self.t = time.monotonic()
        self.snap = self._read()

    def _read(self):
        h = self.hall
        me = os.getpid()
        own = procstat.cpu_s(me)
        relay = procstat.cpu_s(me, self.relay_tid)
        return {"gateway": procstat.cpu_s(h.gateway.proc.pid),
                "devices": sum(procstat.cpu_s(w.device.proc.pid) for w in h.windows if w.device.proc),
                "relay": relay, "driver": own - relay,
                "broker": procstat.cpu_s(h.broker.proc.pid) if getattr(h.broker, "proc", None) else 0.0,
                "receivers": sum(procstat.cpu_s(r.proc.pid) for r in h.receivers.values())}

    def since(self):
        now, dt = self._read(), time.monotonic() - self.t
        out = {}
        for k, v in now.items():
            used = v - self.snap[k]
            out[k + "_cpu_s"] = used
            out[k + "_cpu_pct"] = 100.0 * used / dt if dt > 0 else None
        return out


def _memory(hall):
    pids = [w.device.proc.pid for w in hall.windows if w.device.running]
    hwm = [x for x in (procstat.status_kb(p, "VmHWM") for p in pids) if x]
    # Pss of a sample: smaps_rollup walks every mapping, slow across a thousand.
    pss = [x for x in (procstat.pss_kb(p) for p in pids[:: max(1, len(pids) // 50)]) if x]
    return {"rss_peak_kb_max": max(hwm) if hwm else None,
            "rss_peak_kb_median": statistics.median(hwm) if hwm else None,
            "pss_kb_median": statistics.median(pss) if pss else None,
            "gateway_rss_peak_kb": procstat.status_kb(hall.gateway.proc.pid, "VmHWM")}


def _rate(hall, tally, seconds, visit_s, rng, say):
    """Every window's actor for `seconds`, first visits spread over the
    first half of the window (a thousand invitations at once is no hall)."""
    from simulator.fleet import Actor

    stop = threading.Event()
    actors = []
    for w in hall.windows:
        a = Actor(hall, w, 10 ** 9, random.Random(rng.random()), tally.ledger, tally.counts, stop,
                  pause=(0.5 * visit_s, 1.5 * visit_s))
        a.case = tally.cases.get(w.index, 0)
        actors.append(a)
    spread = min(visit_s, seconds / 2.0)
    starts = sorted((rng.uniform(0, spread), i) for i in range(len(actors)))
    cpu = Cpu(hall)
    t0 = time.monotonic()
    for at, i in starts:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        actors[i].start()
    left = t0 + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)
    stop.set()
    used = cpu.since()  # the rating window only, not the actors' last visits
    window_s = time.monotonic() - t0
    say("rating window over (%.1f s): waiting for the visits under way" % window_s)
    end = time.monotonic() + 25.0
    for a in actors:
        a.join(max(0.1, end - time.monotonic()))
    for a in actors:
        tally.cases[a.w.index] = a.case
    stuck = sum(1 for a in actors if a.is_alive())
    return used, window_s, stuck


def _step_figures(tally, first, before):
    """This step's attempts (ledger[first:]) and counter deltas."""
    with tally.counts["lock"]:
        mine = tally.ledger[first:]
    slow = sum(1 for a in mine if a.outcome in ("cancelled", "interrupted") or (a.score is not None and not a.thanked))
    return {"invited": len(mine),
            "rated": sum(1 for a in mine if a.score is not None),
            "thanked_seen": sum(1 for a in mine if a.thanked),
            "timeouts": slow,
            "refused": tally.count("invite_refused") - before.get("invite_refused", 0),
            "actor_errors": len(tally.counts.get("errors", [])) - before.get("errors", 0)}


def run(progress=None, keep=0, **params):
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError("unknown parameter(s): %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(DEFAULTS)))
    p = dict(DEFAULTS, **params)
    from simulator.hall import DEFAULT_HEAP, HallError, SimHall

    p["heap"] = p["heap"] or DEFAULT_HEAP
    say = progress or (lambda m: None)
    steps = _steps(p["steps"])
    deadline = Deadline(p["budget_s"])
    nofile = procstat.raise_nofile()
    work = tempfile.mkdtemp(prefix="hcp-bench-fleet-")
    rng = random.Random(p["seed"])
    hall = SimHall(work, devices=0, seed=p["seed"], heap=p["heap"], heartbeat_s=p["heartbeat_s"])
    tally = Tally()
    out_steps, stopped, ceiling, rss_ceiling = [], None, None, None
    avail0 = procstat.mem_available_kb()
    ptys0 = procstat.ptys_free()
    rss_est = RSS_GUESS_KB
    per_dev_s = BRINGUP_GUESS_S
    try:
        hall.start_servers(progress=say)
        hall.reason_codes = [code for code, _ in hall.reasons()]
        prev = {"thanked": 0, "upstream_unique": 0, "upstream_records": 0}
        for n in steps:
            add = n - len(hall.windows)
            avail = procstat.mem_available_kb()
            if add * rss_est > p["mem_fraction"] * avail:
                stopped = ("memory: %d more devices x %d kB peak RSS > %.0f%% of MemAvailable %d MB"
                           % (add, rss_est, 100 * p["mem_fraction"], avail // 1024))
                break
            free_ptys = procstat.ptys_free()
            if free_ptys is not None and 2 * add + 32 > free_ptys:
                stopped = "ptys: %d more devices need %d, %d free" % (add, 2 * add, free_ptys)
                break
            need = add * per_dev_s + p["seconds"] + SETTLE_S + 0.02 * n
            if deadline.left < need:
                stopped = "time: the %d-device step needs ~%.0f s, %.0f s of budget_s left" % (n, need, deadline.left)
                break
            say("step %d devices: adding %d" % (n, add))
            t0 = time.monotonic()
            try:
                hall.add_devices(add, progress=say, workers=p["workers"])
            except HallError as err:
                out_steps.append({"devices": n, "carried": False, "why": "bring-up: %s" % str(err)[:400],
                                  "bringup_s": time.monotonic() - t0})
                stopped = "step %d did not come up" % n
                break
            bringup = time.monotonic() - t0
            # What the new devices really took from the machine (noisy: the
            # machine is shared), beside their RSS, which counts shared pages in full.
            drop_kb = (avail - procstat.mem_available_kb()) / add
            per_dev_s = bringup / add
            before = {"invite_refused": tally.count("invite_refused"), "errors": len(tally.counts.get("errors", []))}
            first = len(tally.ledger)
            say("step %d devices: rating for %s s" % (n, p["seconds"]))
            used, window_s, stuck = _rate(hall, tally, p["seconds"], p["visit_s"], rng, say)
            per_target, drain_s = _drain(hall, tally, p["drain_s"])
            main = per_target["http"]
            step = {"devices": n, "added": add, "bringup_s": bringup, "paired": sum(1 for w in hall.windows if w.device_id),
                    "rating_window_s": window_s, "mem_available_mb": procstat.mem_available_kb() // 1024,
                    "mem_taken_kb_per_new_device": drop_kb}
            step.update(_step_figures(tally, first, before))
            step.update({"thanked": main["thanked"] - prev["thanked"],
                         "arrived": main["upstream_unique"] - prev["upstream_unique"],
                         "upstream_records": main["upstream_records"] - prev["upstream_records"],
                         "lost": {k: v["lost"] for k, v in per_target.items()},
                         "invented": {k: v["invented"] for k, v in per_target.items()},
                         "duplicates": {k: v["upstream_duplicates"] for k, v in per_target.items()},
                         "drain_s": drain_s, "actors_still_running": stuck})
            step["thanked_per_s"] = step["thanked"] / window_s if window_s else None
            step.update(_memory(hall))
            step.update(used)
            step["carried"] = bool(_carried_check(per_target) and step["paired"] == n and not step["timeouts"]
                                   and not step["refused"] and not step["actor_errors"] and not stuck)
            prev = {k: main[k] for k in prev}
            out_steps.append(step)
            rss_est = max(rss_est if out_steps[:-1] else 0, step["rss_peak_kb_max"] or RSS_GUESS_KB)
            if ceiling is None and step["rss_peak_kb_max"]:
                # A few devices' MemAvailable drop is mostly noise (page cache, the gateway).
                per_dev = max(step["pss_kb_median"] or 0, drop_kb if add >= 50 else 0)
                ceiling = int(p["mem_fraction"] * avail0 / per_dev) if per_dev > 0 else None
                rss_ceiling = int(p["mem_fraction"] * avail0 / step["rss_peak_kb_max"])
            say("step %d devices: %s, thanked %d, arrived %d, lost %s, gateway %.0f%% CPU, devices %.0f%%, relay %.1f%%"
                % (n, "carried" if step["carried"] else "NOT carried", step["thanked"], step["arrived"], step["lost"],
                   step["gateway_cpu_pct"], step["devices_cpu_pct"], step["relay_cpu_pct"]))
            if not step["carried"]:
                stopped = "step %d not carried" % n
                break
        else:
            stopped = "all steps done"
    finally:
        t_stop = time.monotonic()
        hall.stop()
        teardown = time.monotonic() - t_stop
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    carried = [s["devices"] for s in out_steps if s.get("carried")]
    value = max(carried) if carried else 0
    best = next((s for s in out_steps if s["devices"] == value), None)
    extra = {}
    if best:
        extra = {"lost": sum(best["lost"].values()), "invented": sum(best["invented"].values()),
                 "rss_peak_mb_per_device": best["rss_peak_kb_max"] / 1024.0,
                 "pss_mb_per_device": (best["pss_kb_median"] or 0) / 1024.0,
                 "gateway_cpu_pct": best["gateway_cpu_pct"],
                 "gateway_cpu_pct_per_100_devices": 100.0 * best["gateway_cpu_pct"] / value,
                 "all_cpu_pct": sum(best[k + "_cpu_pct"] for k in ("gateway", "devices", "relay", "driver",
                                                                    "broker", "receivers"))}
        # How many devices the machine's cores would carry at this step's CPU
        # per device, if CPU alone were the limit (everything here grows with N).
        extra["cpu_ceiling_devices"] = int(100.0 * (os.cpu_count() or 1) * value / extra["all_cpu_pct"])
    return result("fleet", value, "devices carried with zero loss", ceiling,
                  dict(p, steps=",".join(map(str, steps)), nofile=nofile),
                  target="1,000 real-firmware devices on one machine, zero loss",
                  reference_is="memory ceiling: devices at the memory each really takes (Pss or MemAvailable "
                               "lost per device) in %.0f%% of MemAvailable at start (%d MB)"
                               % (100 * p["mem_fraction"], avail0 // 1024),
                  rss_ceiling_devices=rss_ceiling, pty_ceiling_devices=ptys0 // 2 if ptys0 else None,
                  stopped=stopped, teardown_s=teardown, steps=[_round_all(s) for s in out_steps], **extra)


def _round_all(step):
    from bench.common import _round

    return {k: _round(v) for k, v in step.items()}
