"""Load for the gateway from many pty devices (not a test; a measuring aid).

    .venv/bin/python tests/support/gwload.py DEVICES EVENTS_PER_DEVICE [RATE_PER_DEVICE]

A command line over `bench.load.LoadHall` (the engine of `hcp bench ingest`
and `hcp bench ack-latency`): starts `hcp gateway run` on a fresh database
with DEVICES pre-paired devices (keys and bindings in the database, the
invitations their ratings answer), each on its own pty, streams tagged events
of the benchmark mix (at most 8 in flight per device, as the firmware;
RATE_PER_DEVICE events/s each, or as fast as ACKs allow) and prints events/s
and press->ACK latency at the device. The load generator runs on the same
machine: on 2 cores it takes a good part of one.
"""

import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench.common import percentile  # noqa: E402
from bench.load import LoadHall  # noqa: E402


def main(n, per, rate=0.0):
    work = tempfile.mkdtemp(prefix="gwload-")
    hall = LoadHall(work, devices=n, events=per)
    try:
        hall.setup()
        hall.start_gateway()
        hall.hello_all()
        st = hall.stream(rate=rate)
    finally:
        hall.close()
        shutil.rmtree(work, ignore_errors=True)
    lat = st["latencies"]
    print("devices %d, events %d, acked %d in %.2f s = %.0f events/s; press->ACK p50 %.1f ms, p99 %.1f ms;"
          " gateway CPU %.1f us/event"
          % (n, n * per, st["acked"], st["seconds"], st["acked"] / st["seconds"],
             percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3, 1e6 * st["gateway_cpu_s"] / max(1, st["acked"])))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
