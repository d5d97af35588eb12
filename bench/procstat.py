"""What a process or the machine costs, read from /proc (Linux): CPU
seconds, peak and proportional memory, the memory still available, the
ptys and file descriptors left. Every reader returns None (or 0 for CPU)
when the process is gone: a benchmark reports a hole, never a traceback."""

import os
import resource

HZ = os.sysconf("SC_CLK_TCK")


def cpu_s(pid, tid=None):
    """utime + stime of a process (or of one of its threads), in seconds."""
    path = "/proc/%d/task/%d/stat" % (pid, tid) if tid else "/proc/%d/stat" % pid
    try:
        with open(path) as f:
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ


def status_kb(pid, key):
    """A kB field of /proc/PID/status: VmHWM (peak RSS), VmRSS..."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kb(pid):
    """Proportional set size: RSS with shared pages (libpython, the VM's
    .so, shared by every device) divided among their sharers. What a device
    really adds to the machine, where RSS counts the shared part in full."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mem_available_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def ptys_free():
    """ptys the kernel will still hand out (each simulated cable takes two)."""
    try:
        with open("/proc/sys/kernel/pty/max") as f:
            top = int(f.read())
        with open("/proc/sys/kernel/pty/nr") as f:
            used = int(f.read())
    except (OSError, ValueError):
        return None
    return top - used


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it): the
    relay holds four descriptors per cable, the gateway one per port.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
