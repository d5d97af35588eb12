"""Records out: one forwarder per [[upstream]] (MQTT, HTTP), delivered at least once."""
