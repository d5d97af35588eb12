"""Security review, finding 14: the long-running commands stop everything they
started when they are told to stop.

`hcp demo`, `hcp sim fleet` and `hcp gateway run` run as real processes; once
their children are up (found by walking /proc), SIGTERM (then, for the fleet,
a second signal in the middle of its cleanup) must end the command and every
descendant within 10 s. Descendants are recorded before the signal, and
afterwards every process that carries this test's marker in its environment
(anything the command started, whenever) must be gone too. And `hcp demo` on
a port another process holds says why in one line, without a traceback."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from support.gwharness import api, write_config
from support.procs import free_port

HCP = str(pathlib.Path(sys.executable).parent / "hcp")
STOP_WITHIN_S = 10.0
UP_WITHIN_S = 60.0


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _alive(pid):
    """Running (a zombie has ended: only its exit status waits to be read)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def descendants(pid):
    """{pid: cmdline} of every process below `pid`, children of children included."""
    kids = _children_map()
    out, todo = {}, [pid]
    while todo:
        for c in kids.get(todo.pop(), ()):
            cmd = _cmdline(c)
            if cmd is not None:
                out[c] = cmd
                todo.append(c)
    return out


def marked(marker):
    """Live processes whose environment carries `marker` (all the command started)."""
    out = {}
    needle = ("HCP_TEST_MARK=%s" % marker).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and _alive(int(name)):
            out[int(name)] = _cmdline(int(name))
    return out


class Command:
    """A command under test, in its own session, with a marker in its environment."""

    def __init__(self, args, tmp_path):
        self.marker = uuid.uuid4().hex
        self.log_path = tmp_path / "command.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", HCP_TEST_MARK=self.marker)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(tmp_path), env=env, start_new_session=True)

    def output(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_up(self, ready, timeout=UP_WITHIN_S):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "exited early (%s):\n%s" % (self.proc.returncode, self.output()[-3000:])
            kids = descendants(self.proc.pid)
            if ready(kids):
                return kids
            assert time.monotonic() < deadline, "not up after %.0f s: %r\n%s" % (
                timeout, sorted(kids.values()), self.output()[-3000:])
            time.sleep(0.2)

    def stop(self, *signals, gap=0.5):
        """Send the signals (`gap` s apart) and wait: (exit status, the
        descendants of before the first signal still alive, any marked
        process still alive), all measured STOP_WITHIN_S after the first."""
        kids = descendants(self.proc.pid)
        t0 = time.monotonic()
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(max(0.1, STOP_WITHIN_S - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            rc = None
        while time.monotonic() - t0 < STOP_WITHIN_S:
            if not any(_alive(p) for p in kids) and not marked(self.marker):
                break
            time.sleep(0.1)
        left = {p: c for p, c in kids.items() if _alive(p)}
        return rc, kids, left, marked(self.marker)

    def cleanup(self):
        """Whatever a failing test left: killed, so it cannot hold ports for others."""
        for pid in [self.proc.pid, *marked(self.marker)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


def _count(kids, word):
    return sum(1 for c in kids.values() if word in c)


def _hall_up(devices, broker_word):
    def ready(kids):
        return (_count(kids, "micropython") >= devices and _count(kids, broker_word) >= 1
                and _count(kids, "simulator.upstream") >= 2 and _count(kids, "gateway run") >= 1)
    return ready


def _check_stopped(cmd, rc, kids, left, stray):
    out = cmd.output()
    assert rc is not None, "still running %.0f s after the signal:\n%s" % (STOP_WITHIN_S, out[-3000:])
    assert not left, "children left running: %r\n%s" % (left, out[-3000:])
    assert not stray, "processes it started left running: %r\n%s" % (stray, out[-3000:])
    assert "Traceback" not in out, out[-3000:]


def test_demo_stops_every_child_on_sigterm(tmp_path):
    cmd = Command([HCP, "demo", "--seconds", "600", "--devices", "2", "--port", str(free_port()),
                   "--workdir", str(tmp_path / "demo")], tmp_path)
    try:
        kids = cmd.wait_up(_hall_up(2, "simulator.broker"))
        assert len(kids) >= 6, kids  # amqtt broker, 2 receivers, gateway, 2 VMs
        rc, kids, left, stray = cmd.stop(signal.SIGTERM)
        _check_stopped(cmd, rc, kids, left, stray)
        assert rc == 0, cmd.output()[-3000:]  # asked to stop, it stopped: no error
        assert "stopping (SIGTERM)" in cmd.output()
    finally:
        cmd.cleanup()


def test_fleet_stops_every_child_on_sigterm_and_a_second_signal_does_not_cut_the_cleanup(tmp_path):
    cmd = Command([HCP, "sim", "fleet", "--devices", "2", "--ratings", "1000", "--broker", "mosquitto",
                   "--max-seconds", "600", "--workdir", str(tmp_path / "hall")], tmp_path)
    try:
        cmd.wait_up(_hall_up(2, "mosquitto"))
        # The second signal lands while the first one's cleanup runs.
        rc, kids, left, stray = cmd.stop(signal.SIGTERM, signal.SIGINT, gap=0.05)
        _check_stopped(cmd, rc, kids, left, stray)
        assert rc == 128 + signal.SIGTERM, (rc, cmd.output()[-3000:])
    finally:
        cmd.cleanup()


def test_gateway_run_stops_on_sigterm_and_leaves_nothing(tmp_path, mosquitto):
    port = free_port()
    conf = write_config(tmp_path, ports=[str(tmp_path / "by-id" / "*")], mqtt_port=mosquitto.port, http_port=port,
                        upstreams=[{"name": "prov", "kind": "http",
                                    "url": "http://127.0.0.1:%d/records" % free_port()}])
    for sig in (signal.SIGTERM, signal.SIGINT):
        cmd = Command([HCP, "gateway", "run", "--config", str(conf)], tmp_path)
        try:
            cmd.wait_up(lambda kids: api(port, "GET", "/api/status", timeout=2)[0] == 200
                        if _port_open(port) else False)
            rc, kids, left, stray = cmd.stop(sig)
            _check_stopped(cmd, rc, kids, left, stray)
            assert rc == 0, cmd.output()[-3000:]
            assert not _port_open(port)
        finally:
            cmd.cleanup()


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_demo_on_a_taken_port_says_why_in_one_line(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(8)
        port = held.getsockname()[1]
        cmd = Command([HCP, "demo", "--seconds", "5", "--devices", "1", "--port", str(port),
                       "--workdir", str(tmp_path / "demo")], tmp_path)
        try:
            try:
                rc = cmd.proc.wait(60)
            except subprocess.TimeoutExpired:
                rc = None
            out = cmd.output()
            assert rc not in (None, 0), (rc, out[-3000:])
            assert "Traceback" not in out, out[-3000:]
            errors = [line for line in out.splitlines() if line.startswith("hcp demo:")]
            assert len(errors) == 1 and str(port) in errors[0], out[-3000:]
            assert out.strip().splitlines()[-1] == errors[0], out[-3000:]  # the last word, one line
            assert not marked(cmd.marker), marked(cmd.marker)  # what it had started, stopped
        finally:
            cmd.cleanup()


# How the commands are built (simulator/procs.py), in a small program of the
# same shape, so that the second signal lands in the cleanup for certain: a
# child the cleanup stops (shielded), and a shell with a child of its own that
# nobody stops, for the last-resort reaper (which spares a process started
# before the command: in-process, a test runner's broker).
PROGRAM = """
import os, signal, subprocess, sys, time
from simulator import procs
before = subprocess.Popen(["sleep", "61"])  # not the command's: spared
try:
    with procs.stop_on_signals(reap_grace=1.0):
        child = None
        try:
            child = procs.popen([sys.executable, "-c", "import time; time.sleep(60)"])
            stray = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"])
            print("up", child.pid, stray.pid, flush=True)
            time.sleep(60)
        finally:
            with procs.shielded():
                os.kill(os.getpid(), signal.SIGINT)  # a second signal, in the middle of the cleanup
                time.sleep(0.3)
                procs.stop_process(child, 5)
                print("cleanup done", flush=True)
except KeyboardInterrupt as stopped:
    print("stopped by", procs.signal_name(stopped), flush=True)
    print("spared", before.poll() is None, flush=True)
    before.kill()
    before.wait()
    sys.exit(128 + stopped.signum)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_runs_the_whole_cleanup_and_leaves_no_descendant(tmp_path, sig):
    cmd = Command([sys.executable, "-c", PROGRAM], tmp_path)
    try:
        cmd.wait_up(lambda kids: "up" in cmd.output() and _count(kids, "sleep 60") >= 3, timeout=20)
        rc, kids, left, stray = cmd.stop(sig)
        assert len(kids) >= 4, kids  # the python child, sh, its two sleeps
        _check_stopped(cmd, rc, kids, left, stray)
        out = cmd.output()
        said = "Ctrl-C" if sig == signal.SIGINT else sig.name
        assert "cleanup done" in out and "stopped by %s" % said in out, out
        assert "spared True" in out, out
        assert rc == 128 + sig, (rc, out)
    finally:
        cmd.cleanup()
