"""Helpers the tests share: real processes on loopback, started and stopped
by the test that needs them."""
