"""The server processes of a simulated hall besides the devices: the gateway
(`hcp gateway run`) and the upstream receivers (`python -m simulator.upstream`),
each a real process that a fault can kill -9 and restart.

And how the long-running commands (`hcp demo`, `hcp sim fleet`) end, Ctrl-C
or SIGTERM alike, with no child left behind:

- `popen()` starts each server child as the leader of its own process group,
  so `stop_process()` signals it with anything it started, and a terminal's
  Ctrl-C reaches only the command, which stops its children in order;
- `stop_on_signals()` (the command line) makes SIGTERM and SIGHUP raise
  `Stopped`, a KeyboardInterrupt, in the main thread: the same path as
  Ctrl-C, through every `finally` that calls a `stop()`. From the first
  signal on, further ones are only noted, so a second Ctrl-C or SIGTERM
  cannot cut the cleanup half-way; `shielded()` guards a cleanup the same way
  when it runs for another reason (the end of a timed run). When the command
  is done, `reap_children()` stops any descendant still alive (walking
  /proc: a device VM a fault restarted during the cleanup included), SIGTERM
  then SIGKILL, as a last resort.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from simulator.net import free_port, wait_port
from tools.command import hcp_argv


class ProcessError(RuntimeError):
    """A child that did not start. `reason` is one line; str() adds the
    tail of its log."""

    def __init__(self, reason, tail=""):
        super().__init__(reason + ("\n" + tail if tail else ""))
        self.reason = reason


def popen(argv, **kw):
    """subprocess.Popen, the child leading its own process group (see above).
    Refused once the command is stopping: a fault thread must not start a
    gateway or a broker that nobody will stop."""
    if _stopping.is_set():
        raise ProcessError("not starting %s: stopping" % os.path.basename(str(argv[0])))
    return subprocess.Popen(argv, process_group=0, **kw)


def _leads_group(proc):
    try:
        return os.getpgid(proc.pid) == proc.pid
    except OSError:
        return False


def _signal(proc, sig, group):
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except OSError:  # gone already
        pass


def stop_process(proc, timeout=5.0):
    """SIGTERM, and SIGKILL if it has not exited within `timeout`; to its
    whole process group when it leads one (a `popen()` child), so that what
    it started goes with it."""
    if proc is None:
        return
    if proc.poll() is None:
        group = _leads_group(proc)  # not reaped yet: its pid is still its own
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            proc.wait()
        if group:
            # The leader is gone; members still in its group (none, usually)
            # are orphans now. A group id is not reused while it has members.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


# --- stopping on a signal ------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopping = threading.Event()  # a stop signal came: no new server children
_noted = []  # signals that came while a cleanup was shielded


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal under `stop_on_signals()`."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _note(signum, frame):
    _noted.append(signum)


def _stop(signum, frame):
    _stopping.set()
    for sig in STOP_SIGNALS:  # from now on only noted: the cleanup this starts runs to its end
        signal.signal(sig, _note)
    raise Stopped(signum)


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def signal_name(exc):
    """What stopped us, for a person: "SIGTERM", "SIGHUP", or "Ctrl-C" for
    SIGINT and a plain KeyboardInterrupt."""
    if getattr(exc, "signum", signal.SIGINT) == signal.SIGINT:
        return "Ctrl-C"
    return exc.name


@contextlib.contextmanager
def stop_on_signals(reap_grace=3.0):
    """For a command's body: SIGINT, SIGTERM and SIGHUP raise `Stopped`
    (only the first; later ones are noted), and when the body is done,
    however it ends, no descendant process is left (`reap_children`).
    Outside the main thread it only reaps."""
    old = {}
    earlier = frozenset(descendants())  # not ours to stop (a test runner's broker, say)
    if _in_main_thread():
        old = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            signal.signal(sig, _stop)
    try:
        yield
    finally:
        if old:
            for sig in STOP_SIGNALS:
                signal.signal(sig, _note)
        _stopping.set()
        try:
            reap_children(reap_grace, spare=earlier)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            _stopping.clear()
            del _noted[:]


@contextlib.contextmanager
def shielded():
    """Run a cleanup (`hall.stop()`) to its end: a stop signal that comes
    meanwhile is noted, then handled as before once the cleanup is done.
    Outside the main thread (where no signal handler runs) it does nothing."""
    if not _in_main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        noted = [sig for sig in _noted if old[sig] is not _note]
        for sig in noted:
            _noted.remove(sig)
        for sig in noted[:1]:  # one stop is enough
            if callable(old[sig]):
                old[sig](sig, None)
            elif old[sig] == signal.SIG_DFL:
                signal.raise_signal(sig)


def descendants(pid=None, spare=()):
    """Pids of every live process below `pid` (default: this one), children
    of children included, from /proc; without the processes in `spare` and
    what is below them."""
    pid = os.getpid() if pid is None else pid
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":  # a zombie has ended already
            kids.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), ()):
            if child not in spare:
                out.append(child)
                todo.append(child)
    return out


def _reap_zombies(pids):
    """Collect the exit status of those of `pids` that are our own ended
    children (no Popen will wait for them now: the command is ending)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child, or collected already
            pass


def reap_children(grace=3.0, spare=()):
    """The last resort: SIGTERM every descendant still alive (but those in
    `spare` and theirs), SIGKILL what is left after `grace` seconds. Returns
    the pids it had to signal."""
    signalled = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = descendants(spare=spare)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                signalled.append(pid)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap_zombies(signalled)
            if not descendants(spare=spare):
                break
            time.sleep(0.05)
    _reap_zombies(signalled)
    return sorted(set(signalled))


def _listening(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ": " + lines[-1] if lines else ""


def one_line(err):
    """What went wrong, on one line: a ProcessError's reason, else the first
    line of the message, with the last line of what follows when the first
    only announces it ("...did not come up:" + a log tail)."""
    reason = getattr(err, "reason", None)
    if reason:
        return reason
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if len(lines) > 1 and lines[0].endswith(":"):
        return "%s %s" % (lines[0], lines[-1])
    return lines[0]


class Proc:
    """A restartable child process with its output in a log file."""

    def __init__(self, name, argv, workdir, ready_port=None, env=None, ready_text=None):
        self.name = name
        self.argv = argv
        self.workdir = str(workdir)
        self.ready_port = ready_port
        self.ready_text = ready_text
        self.env = env
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.log = os.path.join(self.workdir, name + ".log")

    def start(self, timeout=20.0):
        if self.ready_port and _listening(self.ready_port):
            # Someone else's server would pass for ours (and ours would fail
            # to bind): say so now, not after a timeout.
            raise ProcessError("%s did not start: 127.0.0.1:%d is in use by another process"
                               % (self.name, self.ready_port))
        with open(self.log, "ab") as log:
            self.proc = popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, cwd=self.workdir,
                              env=dict(os.environ, **(self.env or {})))
        self.starts += 1
        if self.ready_text:
            self._wait_text(timeout)
        if self.ready_port:
            try:
                wait_port(self.ready_port, timeout=timeout, proc=self.proc)
            except (RuntimeError, TimeoutError) as err:
                raise ProcessError("%s did not start: %s (log: %s)%s"
                                   % (self.name, err, self.log, _last_line(self.tail(5))), self.tail()) from err
        return self

    def _wait_text(self, timeout):
        # The log holds every start's output; wait for one more ready line.
        want = self._count_text() + 1
        deadline = time.monotonic() + timeout
        while self._count_text() < want:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ProcessError("%s did not get ready (log: %s)%s"
                                   % (self.name, self.log, _last_line(self.tail(5))), self.tail())
            time.sleep(0.05)

    def _count_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().count(self.ready_text.encode())
        except OSError:
            return 0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()
            self.kills += 1

    def stop(self, timeout=10.0):
        stop_process(self.proc, timeout)

    def tail(self, lines=20):
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


def gateway(workdir, config_path, http_port):
    return Proc("gateway", hcp_argv() + ["gateway", "run", "--config", str(config_path)],
                workdir, ready_port=http_port)


def http_receiver(workdir, name="upstream-http", port=None):
    port = port or free_port()
    db = os.path.join(str(workdir), name + ".db")
    p = Proc(name, [sys.executable, "-m", "simulator.upstream", "http", "--port", str(port), "--db", db],
             workdir, ready_port=port)
    p.port, p.db = port, db
    return p


def mqtt_receiver(workdir, broker_port, topic, name="upstream-mqtt", username=None, password_file=None, ca=None):
    db = os.path.join(str(workdir), name + ".db")
    args = [sys.executable, "-m", "simulator.upstream", "mqtt", "--port", str(broker_port), "--topic", topic,
            "--db", db]
    if username:
        args += ["--username", username, "--password-file", str(password_file)]
    if ca:
        args += ["--ca", str(ca)]
    p = Proc(name, args, workdir, ready_text='"ready": true')
    p.db = db
    return p


def control_http_receiver(port, **cmd):
    req = urllib.request.Request("http://127.0.0.1:%d/control" % port, data=json.dumps(cmd).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())
