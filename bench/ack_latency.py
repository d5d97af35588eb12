"""Press -> ACK latency at the device (docs/design.md §5: p99 <= 10 ms at 100
devices x 10 events/s): the time from a load device writing an event frame
on its pty to it reading the ACK that names the event (the gateway ACKs only
after the FULL commit). Load: bench/load.py (per-device keys, the event mix
and invitations described there), each device sending one event every
100 ms, the devices spread evenly over the period.
Reference, same run: a bare pty round trip (a 32-byte frame written on the
master, echoed by another process on the raw slave, read back). ptys ignore
the baud rate: on a real 115200 line a 32-byte frame alone takes 2.78 ms
each way, so this measures software.

    hcp bench ack-latency [--json] [-p devices=100] [-p rate=10] [-p seconds_load=20]
"""

import shutil
import tempfile

from bench.common import Deadline, percentile, result
from bench.load import LoadHall, pty_echo_rtt


def run(progress=None, devices=100, rate=10.0, seconds_load=20, seconds=110, echo=3000, keep=0):
    say = progress or (lambda m: None)
    deadline = Deadline(seconds)
    events = int(rate * seconds_load)
    work = tempfile.mkdtemp(prefix="hcp-bench-acklat-")
    hall = LoadHall(work, devices=devices, events=events)
    try:
        say("reference: bare pty echo round trips")
        ref = pty_echo_rtt(echo, deadline=deadline)
        say("preparing %d devices x %d events" % (devices, events))
        hall.setup()
        hall.start_gateway()
        hall.hello_all()
        say("streaming %g events/s per device for %d s" % (rate, seconds_load))
        st = hall.stream(rate=rate, deadline=deadline, progress=say)
        hall.stop_gateway()
        got, want = hall.check(), hall.expected()
        if st["acked"] != devices * events or got != want:
            raise RuntimeError("lost or misplaced: acked %d of %d; database %s, expected %s"
                               % (st["acked"], devices * events, got, want))
    finally:
        hall.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    lat = st["latencies"]
    p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
    r50, r99 = percentile(ref, 50) * 1e3, percentile(ref, 99) * 1e3
    return result("ack_latency_p99", p99, "ms", r99,
                  {"devices": devices, "events_per_s_per_device": rate, "seconds": seconds_load,
                   "transport": "pty (baud rate ignored)", "reference": "pty echo round trip, 32 B"},
                  target=10.0, higher_is_better=False, p50_ms=p50, p999_ms=percentile(lat, 99.9) * 1e3,
                  max_ms=max(lat) * 1e3, reference_p50_ms=r50, events=st["acked"],
                  events_per_s=st["acked"] / st["seconds"], gateway_cpu_s=st["gateway_cpu_s"])
