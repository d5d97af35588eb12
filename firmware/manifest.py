# The MicroPython build manifest: protocol/ and firmware/ frozen into an
# ESP32 or RP2040 image (their bytecode and constants then stay in flash,
# not in the heap). Read by MicroPython's tools/makemanifest.py when a port
# is built with it; never flashed (tools/flash.py HOST_ONLY):
#
#   cd micropython/ports/esp32   # or ports/rp2 (BOARD=RPI_PICO)
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/hcp/firmware/manifest.py
#
# firmware/README.md "Freezing" has the steps, what then goes on the flash
# and what is and is not measured. The lists are the device's modules as
# `hcp tool flash` ships them, less the sim board's HAL and main.py (which a
# port runs from its filesystem); tests/test_firmware_manifest.py keeps them
# in step with tools/flash.py.

# ruff: noqa: F821  (include and package are makemanifest's)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, ...)

package("protocol", files=("__init__.py", "errors.py", "hmac256.py", "rules.py", "rx.py", "schema.py",
                           "tx.py"), base_path="..")
package("firmware", files=("__init__.py", "app.py", "boot.py", "buttons.py", "hal_machine.py", "journal.py",
                           "link.py", "orders.py", "rating.py", "recover.py", "screen.py", "ssd1306.py",
                           "store.py"), base_path="..")
