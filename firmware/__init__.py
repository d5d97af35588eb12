# hcp evaluator firmware (MicroPython). One module per thing it owns:
#
#   main.py        entry point: finds the packages, starts app.main()
#   app.py         the device: boot order, main loop, glue between the parts
#   orders.py      what the device does with each gateway message
#   rating.py      the evaluation state machine (pure logic)
#   buttons.py     debounce and stuck-button detection (pure logic)
#   journal.py     the flash journal: CRC'd fixed slots, removed only on ACK
#   store.py       settings on flash: identity, boot counter, pairing, bitmaps
#   link.py        frames to and from the gateway: hello, retransmit, health
#   screen.py      drawing with framebuf from the board's resolution
#   hal_sim.py     the `sim` board (MicroPython unix port, pty, stdin, PBM)
#   hal_machine.py the ESP32/RP2040 boards (machine.Pin/UART/I2C, ssd1306)
#
# This file stays tiny: importing the package costs the device RAM.

VERSION = "0.1.0"
