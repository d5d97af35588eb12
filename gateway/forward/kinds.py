"""The forwarders, by the `kind` of an `[[upstream]]` table: the one place a
kind names its class. Each class takes (db_path, name, settings) and has
start(), wake(), status(), stop(timeout); its module documents its settings
and checks them (`validate`)."""

from gateway.forward.http import HttpForwarder
from gateway.forward.mqtt import MqttForwarder

FORWARDERS = {"http": HttpForwarder, "mqtt": MqttForwarder}


def make(db_path, upstream):
    """The forwarder of one configured upstream (gateway.config.Upstream), not started."""
    return FORWARDERS[upstream.kind](db_path, upstream.name, dict(upstream.settings))
