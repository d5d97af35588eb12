import pathlib
import sys

# tests/ on sys.path, as it is when MicroPython runs a test file directly,
# so the dual-interpreter tests can `import mpcompat`.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import pytest  # noqa: E402
from support.procs import Mosquitto  # noqa: E402


@pytest.fixture
def mosquitto(tmp_path):
    """A real Mosquitto broker on a free loopback port; .port, .restart(), .kill()."""
    broker = Mosquitto(str(tmp_path)).start()
    yield broker
    broker.stop()
