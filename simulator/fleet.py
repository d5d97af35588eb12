"""`hcp sim fleet`: a hall of real-firmware evaluators, scripted clerks and
citizens, faults, and the invariants of docs/design.md §6 checked at the end.

Each window has one actor thread playing its clerk and its citizens in turn:
the clerk invites (one case, or a batch of 2-4), the citizen gives a 好评,
a 差评 with reasons (keys 1-4 toggle, key 5 turns the page / confirms), or
walks away (the invitation times out: unrated); now and then someone presses
with no invitation open (uninvited, audit only) or leans on a button until it
counts as stuck. One fault thread injects the chosen faults at random moments
until the actors are done. Then the faults stop, everything drains, and what
the upstream receivers got is checked against what the citizens did.
"""

import json
import random
import threading
import time

from simulator import invariants, procs, upstream
from simulator.device import SimDeviceError
from simulator.hall import SimHall, noise_counts

FAULTS = ("power-cut", "line-noise", "gateway-kill", "broker-restart", "upstream-outage", "disk-full")



def _prompt_shows(dev, invitation, timeout):
    """Wait until the screen prompts for this invitation. A citizen rates
    what the screen shows; under load an earlier invitation (one the clerk
    gave up on or withdrew) can still be on screen when the next is opened,
    and a press then answers that one, not the clerk's."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if dev.wait_state(("invited",), timeout=max(0.0, left)) == "invited" \
                and dev.showing() == invitation:
            return True
        if left <= 0:
            return False
        time.sleep(0.02)

class Actor(threading.Thread):
    def __init__(self, hall, w, quota, rng, ledger, counts, stop, pause=(0.0, 0.0)):
        super().__init__(name="actor-" + w.window, daemon=True)
        self.hall, self.w, self.quota, self.rng = hall, w, quota, rng
        self.pause = pause  # seconds between visits (the demo's human pace)
        self.ledger, self.counts, self.stop_ev = ledger, counts, stop
        self.n = 0
        self.case = 0

    def _count(self, key, n=1):
        with self.counts["lock"]:
            self.counts[key] = self.counts.get(key, 0) + n

    def run(self):
        try:
            while self.n < self.quota and not self.stop_ev.is_set():
                self.attempt = None
                try:
                    self.one()
                except SimDeviceError:
                    # A power cut took the device while the citizen pressed:
                    # the attempt is interrupted (its rating may or may not
                    # have been journaled), and the next citizen waits for
                    # the device to be back.
                    a = self.attempt
                    if a is not None and a not in self.ledger:
                        a.outcome = "interrupted" if a.score is not None else a.outcome
                        a.interrupted = True
                        self._add(a)
                    self.w.device.wait_state(("idle",), timeout=10.0)
                if self.pause[1]:
                    self.stop_ev.wait(self.rng.uniform(*self.pause))
        except Exception as err:  # an actor's crash must show, not hang the run
            self._count("actor_errors")
            self.counts.setdefault("errors", []).append("%s: %r" % (self.w.window, err))

    def _cases(self):
        k = self.rng.choice((2, 3, 4)) if self.rng.random() < 0.15 else 1
        out = []
        for _ in range(k):
            self.case += 1
            out.append("%s-%s-%05d" % (self.hall.hall_id, self.w.window, self.case))
        return out

    def one(self):
        dev, rng = self.w.device, self.rng
        r = rng.random()
        if r < 0.04 and dev.state() == "idle":
            dev.press(rng.randint(1, 5))  # nobody invited: audit only
            self._count("uninvited")
            time.sleep(0.1)
        elif r < 0.05 and dev.state() == "idle":
            key = rng.randint(1, 5)
            dev.down(key)
            time.sleep(self.hall.stuck_ms / 1000.0 + 0.5)
            dev.up(key)
            self._count("stuck")
            time.sleep(0.2)
        cases = self._cases()
        status, inv = self.hall.invite(self.w, cases)
        if status == 0:
            # No answer (the gateway was killed mid-request): the invitation
            # may exist and reach the device later. The clerk does not know,
            # so nobody rates it; the next citizen waits until it timed out.
            self._count("invite_refused")
            self._add(invariants.Attempt(self.w.device_id, None, cases, outcome="unrated"))
            self._settle()
            return
        if status != 200:
            self._count("invite_refused")
            time.sleep(0.3 + rng.random() * 0.5)  # gateway restarting, device rebooting...
            return
        self.n += 1
        starts = dev.starts
        a = self.attempt = invariants.Attempt(self.w.device_id, inv, cases)
        if not _prompt_shows(dev, inv, timeout=4.0):
            cancelled = self.hall.cancel(inv) == 200  # the prompt never showed: the clerk withdraws it
            a.outcome = "cancelled"
            self._add(a)
            if not cancelled:
                self._settle()  # still open: it may show later, nobody rates it
            return
        choice = rng.random()
        if choice < 0.1:
            a.outcome = "unrated"  # the citizen walks away
            dev.wait_state(("idle",), timeout=self.hall.invite_timeout_s + 5.0)
            self._add(a)
            return
        if choice < 0.3:
            score = rng.choice((1, 2))
            picked = sorted(rng.sample(range(8), rng.choice((1, 1, 2, 3))))
            dev.press(score)
            if dev.wait_state(("reasons",), timeout=4.0) != "reasons":
                a.outcome = "interrupted"
                a.interrupted = dev.starts != starts
                self._add(a)
                return
            a.score, a.reasons = score, tuple(self.hall.reason_codes[i] for i in picked)
            for page in (0, 1):
                for i in picked:
                    if i // 4 == page:
                        dev.press(6 - (i % 4 + 1))  # key k is the (6-k)★ button
                dev.press(1)  # key 5: next page, then confirm
        else:
            a.score = rng.choice((3, 4, 5))
            dev.press(a.score)
        seen = dev.wait_state(("thanks",), timeout=10.0)
        a.thanked = seen == "thanks" and dev.starts == starts
        a.interrupted = not a.thanked
        self._add(a)
        if a.thanked:
            self._count("thanked_seen")

    def _settle(self):
        """Until an invitation the clerk lost track of has timed out."""
        self.stop_ev.wait(self.hall.invite_timeout_s + 1.0)
        self.w.device.wait_state(("idle",), timeout=self.hall.invite_timeout_s + 5.0)

    def _add(self, a):
        with self.counts["lock"]:
            self.ledger.append(a)


def _inject(hall, kinds, rng, stop, noise_rate, say):
    """Faults at random moments until stop is set."""
    if "line-noise" in kinds:
        hall.set_noise(noise_rate)
        hall.faults["line-noise"] = 1
    others = [k for k in kinds if k != "line-noise"]
    # Every kind once, in a random order, before any repeats.
    # The first pass comes quickly (a short run still gets them all).
    order = rng.sample(others, len(others))
    while others and not stop.wait(rng.uniform(0.5, 1.5) if order else rng.uniform(1.5, 4.0)):
        kind = order.pop(0) if order else rng.choice(others)
        try:
            if kind == "power-cut":
                w = rng.choice(hall.windows)
                with w.lock:
                    hall.power_cut(w, off_s=rng.uniform(0.1, 0.8))
            elif kind == "gateway-kill":
                hall.kill_gateway(off_s=rng.uniform(0.2, 1.0))
            elif kind == "broker-restart":
                hall.restart_broker(off_s=rng.uniform(0.2, 1.0))
            elif kind == "upstream-outage":
                hall.upstream_outage(rng.uniform(2.0, 6.0))
            elif kind == "disk-full":
                hall.disk_full(rng.uniform(1.0, 4.0))
            say("fault: %s" % kind)
        except Exception as err:
            say("fault %s failed: %r" % (kind, err))


def _drain(hall, timeout, say):
    """Wait until devices' journals and the gateway's outbox are empty."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        devs = hall.device_summaries()
        depth = sum((d.get("journal_depth") or 0) for d in devs.values())
        st = hall.status()
        pending = (st.get("outbox") or {}).get("pending")
        now = (depth, pending)
        if now != last:
            say("drain: device journals %s, outbox pending %s" % now)
            last = now
        if devs and depth == 0 and pending == 0:
            time.sleep(hall.heartbeat_s + 0.5)  # one more heartbeat: journals really empty
            devs = hall.device_summaries()
            if sum((d.get("journal_depth") or 0) for d in devs.values()) == 0:
                return {"device_journal_depth": 0, "outbox_pending": 0, "drained": True}
        time.sleep(0.5)
    return {"device_journal_depth": last[0] if last else None,
            "outbox_pending": last[1] if last else None, "drained": False}


def _one_code_one_account(hall):
    status, body = hall.api.call("GET", "/api/bindings")
    if status != 200:
        return False
    bindings = body["bindings"]
    staff = [b["staff_id"] for b in bindings]
    devices = [b["device_id"] for b in bindings]
    if len(set(staff)) != len(staff) or len(set(devices)) != len(devices):
        return False
    want = {w.device_id: w.staff_id for w in hall.windows}
    devs = hall.device_summaries()
    for b in bindings:
        if want.get(b["device_id"]) != b["staff_id"]:
            return False
        if devs.get(b["device_id"], {}).get("reported_staff") != b["staff_id"]:
            return False
    return True


def run(devices=20, ratings=200, seed=1, faults=(), noise_rate=0.002, workdir=None, progress=None,
        broker="auto", drain_s=120.0, max_s=900.0, heap=None, fast=False, board="sim"):
    import tempfile

    say = progress or (lambda msg: None)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError("unknown fault(s): %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(FAULTS)))
    if fast and "line-noise" in faults:
        raise ValueError("line-noise does not apply to --fast: its devices have no serial line")
    rng = random.Random(seed)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hcp-sim-")
        workdir = tmp.name
    if fast:  # in-process devices over MQTT (simulator/fastlink.py)
        from simulator.fastlink import FastHall

        hall = FastHall(workdir, devices=devices, seed=seed, broker=broker)
    else:
        hall = SimHall(workdir, devices=devices, seed=seed, broker=broker, heap=heap, board=board)
    t0 = time.monotonic()
    stop, fault_stop = threading.Event(), threading.Event()
    try:
        hall.start(progress=say)
        hall.reason_codes = [code for code, _ in hall.reasons()]
        ledger, counts = [], {"lock": threading.Lock()}
        quotas = [ratings // devices + (1 if i < ratings % devices else 0) for i in range(devices)]
        actors = [Actor(hall, w, q, random.Random(rng.random()), ledger, counts, stop)
                  for w, q in zip(hall.windows, quotas, strict=True)]
        injector = threading.Thread(target=_inject, args=(hall, list(faults), random.Random(rng.random()),
                                                           fault_stop, noise_rate, say), daemon=True)
        for a in actors:
            a.start()
        injector.start()
        deadline = time.monotonic() + max_s
        while any(a.is_alive() for a in actors):
            if time.monotonic() > deadline:
                stop.set()
                say("time limit reached: stopping the actors")
                break
            time.sleep(2.0)
            say("invited %d/%d, thanked %d, faults %s" % (
                sum(a.n for a in actors), ratings, counts.get("thanked_seen", 0),
                json.dumps({k: v for k, v in hall.faults.items()}, sort_keys=True)))
        fault_stop.set()
        injector.join(10)
        for a in actors:
            a.join(15)
        hall.set_noise(0.0)
        for w in hall.windows:  # every device powered, the gateway and the broker up
            if not w.device.running:
                w.device.start()
        if not hall.gateway.running:
            hall.gateway.start()
        if not hall.broker.running:
            hall.broker.start()
        counters = _drain(hall, drain_s, say)
        report = {"devices": devices, "seed": seed, "faults": list(faults), "fast": bool(fast),
                  "board": "fast" if fast else board}
        per_target = {}
        for name, rec in hall.receivers.items():
            per_target[name] = invariants.check(ledger, upstream.records(rec.db),
                                                uninvited_pressed=counts.get("uninvited", 0))
        main = per_target["http"]
        report.update({k: main[k] for k in ("invited", "thanked", "unrated", "uninvited", "upstream_records",
                                            "upstream_unique", "upstream_unrated", "upstream_duplicates",
                                            "lost", "lost_examples", "invented", "invented_examples", "batches",
                                            "batches_ok")})
        report["cancelled"] = sum(1 for a in ledger if a.outcome == "cancelled")
        report["stuck_presses"] = counts.get("stuck", 0)
        report["one_code_one_account"] = _one_code_one_account(hall)
        report["faults_injected"] = dict(hall.faults)
        # The hall broker as `hcp gateway broker-config` writes it: TLS, users, ACL.
        report["broker"] = {"kind": hall.broker.kind, "tls_users_acl": bool(hall.secure)}
        if "line-noise" in faults:
            report["noise"] = noise_counts(hall)
        report["counters"] = counters
        report["targets"] = {k: {x: v[x] for x in ("upstream_records", "upstream_unique", "lost", "invented",
                                                    "upstream_duplicates", "ok")} for k, v in per_target.items()}
        report["actor_errors"] = counts.get("errors", [])
        report["seconds"] = round(time.monotonic() - t0, 1)
        report["ok"] = bool(all(v["ok"] for v in per_target.values()) and report["one_code_one_account"]
                            and counters.get("drained") and not report["actor_errors"])
        return report
    finally:
        # Stopped early too (Ctrl-C, SIGTERM: simulator/procs.py): actors and
        # faults first, so that no fault restarts what the hall stops; then
        # the hall, to its end even if another signal comes.
        stop.set()
        fault_stop.set()
        with procs.shielded():
            hall.stop()
            if tmp is not None:
                tmp.cleanup()
