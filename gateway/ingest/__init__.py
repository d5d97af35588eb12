"""Frames in: serial ports and MQTT topics, checked and routed (keys, replay)."""
