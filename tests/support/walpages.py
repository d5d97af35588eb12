"""Which b-trees one group commit's WAL pages belong to (not a test; a measuring aid).

    .venv/bin/python tests/support/walpages.py [DEVICES] [EVENTS_PER_DEVICE_PER_BATCH]

Builds the database of `bench.load.LoadHall` (devices, keys, bindings, the
invitations), runs `gateway.store.commit.Committer._commit` on batches of the
bench's events (EVENTS_PER_DEVICE_PER_BATCH of every device, round robin, as
under load), checkpoints the WAL empty before each, and after 50 batches
maps the page numbers of the last commit's WAL frames to their b-trees
through `dbstat`. docs/benchmarks.md ("where a commit's WAL pages go").
"""

import collections
import pathlib
import shutil
import sqlite3
import struct
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bench.load import LoadHall  # noqa: E402
from gateway import config
from gateway.store import db  # noqa: E402
from gateway.store.commit import Committer, Event  # noqa: E402


class _Dev:
    def __init__(self, i, device_id):
        self.device_id = device_id
        self.binding = {"staff_id": "S%04d" % (1001 + i), "window": "W%03d" % (i + 1)}
        self.events = self.duplicates = 0


def main(n=100, per_batch=4, batches=50):
    work = tempfile.mkdtemp(prefix="walpages-")
    try:
        hall = LoadHall(work, devices=n, events=per_batch * batches)
        hall.setup()
        hall.close()
        conn = db.open_db(str(hall.db_path))
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        cm = Committer(conn, ["prov"], config.load(str(hall.conf)).hall, send_ack=lambda dev, ids: None)
        devs = [_Dev(i, hall.ids[i]) for i in range(n)]
        msgs = [hall.events_of(i) for i in range(n)]
        for s in range(0, per_batch * batches, per_batch):
            batch = [Event(m, devs[i], time.time(), float(m["time"]), "device")
                     for i in range(n) for m in msgs[i][s:s + per_batch]]
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cm._commit(batch)
        data = (hall.db_path.parent / (hall.db_path.name + "-wal")).read_bytes()
        page_size = struct.unpack(">I", data[8:12])[0]
        pages = [struct.unpack(">I", data[off:off + 4])[0] for off in range(32, len(data) - 23, 24 + page_size)]
        conn.close()
        r = sqlite3.connect(str(hall.db_path))
        owner = {p: name for name, p in r.execute("SELECT name, pageno FROM dbstat")}
        r.close()
        print("%d events in the commit: %d WAL frames (%d distinct pages of %d bytes)"
              % (len(batch), len(pages), len(set(pages)), page_size))
        for name, count in collections.Counter(owner.get(p, "?") for p in pages).most_common():
            print("  %-32s %d" % (name, count))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
