"""Real server processes for tests, started and stopped by the test that
needs them. The broker code is the product's own (simulator/broker.py)."""

from simulator.broker import BrokerProcess
from simulator.net import free_port, wait_port  # noqa: F401


def Mosquitto(workdir, port=None):
    """A Mosquitto process (not started): .start(), .port, .restart(), .kill()."""
    return BrokerProcess(workdir, port=port, kind="mosquitto")
