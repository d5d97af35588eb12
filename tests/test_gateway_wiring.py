"""The gateway's parts are made with what they need (issue 13, item 3c,
3d): gateway/service.py never patches a part after making it (no
assignment to a part's attribute, no appending to a part's list, no lambda
standing in for a part not made yet), forwarders come from the table of
gateway/forward/kinds.py, and that table knows the kinds the config accepts."""

import ast
import pathlib

from gateway import config
from gateway.forward import kinds as forwarders
from gateway.forward.http import HttpForwarder
from gateway.forward.mqtt import MqttForwarder

SERVICE = pathlib.Path(__file__).resolve().parent.parent / "gateway" / "service.py"


def _patches(source):
    """Lines of `source` that reach into a part: `self.part.attr = ...`,
    `self.part.list.append(...)` / `self.part.on_x(fn)` registrations, a
    lambda passed to a constructor, importlib."""
    out = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute):
                out.append((node.lineno, "assigns %s" % ast.unparse(t)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            inner = node.func.value
            if node.func.attr in ("append", "extend", "add") and isinstance(inner, ast.Attribute) \
                    and isinstance(inner.value, ast.Attribute):
                out.append((node.lineno, "appends to %s" % ast.unparse(inner)))
            if node.func.attr.startswith("on_"):
                out.append((node.lineno, "registers with %s" % ast.unparse(node.func)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id[:1].isupper() \
                and any(isinstance(a, ast.Lambda) for a in list(node.args) + [k.value for k in node.keywords]):
            out.append((node.lineno, "passes a lambda to %s" % node.func.id))
        if isinstance(node, (ast.Import, ast.ImportFrom)) and "importlib" in ast.unparse(node):
            out.append((node.lineno, "imports importlib"))
    return out


def test_the_service_patches_no_part():
    assert _patches(SERVICE.read_text(encoding="utf-8")) == []


def test_the_check_sees_each_way_of_patching():
    old = """
import importlib
def _start(self):
    self.committer = Committer(w, send_ack=lambda dev, ids: self.router.send_ack(dev, ids))
    self.router.on_invite_refused = self.invitations.refused
    self.router.listeners.append(self.monitor.device_changed)
    self.committer.on_alarm(self._alarm_changed)
    self.committer.ack_latency = self.dashboard.metrics.ack_latency
"""
    got = [why.split()[0] for _, why in _patches(old)]
    assert got.count("assigns") == 2 and got.count("appends") == 1 and got.count("registers") == 1
    assert got.count("passes") == 1 and got.count("imports") == 1


def test_forwarders_by_kind():
    assert forwarders.FORWARDERS == {"http": HttpForwarder, "mqtt": MqttForwarder}
    assert set(forwarders.FORWARDERS) == set(config.UPSTREAM_KINDS)
