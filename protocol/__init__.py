# hcp wire protocol: frames and messages shared by the firmware (MicroPython)
# and the gateway (CPython). Pure functions over bytes; see README.md here.
#
# Import the submodules you need (protocol.messages, protocol.reader, ...):
# this file stays empty so that the device only loads what it uses.
