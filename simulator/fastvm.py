"""The firmware's own modules, a fresh copy per fast device.

The firmware keeps its state in module globals (firmware/app.py is the
device, firmware/link.py the link, protocol/rx.py and protocol/tx.py each own
one buffer, firmware/store.py has its flash ROOT): on a 64 KB heap a class
and its instance dict would cost RAM (firmware/README.md "Fast simulator"
has the figures). A process that runs a thousand devices therefore gives
each one its own copy of those modules, the way each MicroPython process has
its own: a `Ram` is one device's RAM. Its modules are built from the very
code of firmware/*.py and protocol/*.py (compiled once, executed into a
fresh module object per device and per boot) and wired to each other by an
import resolver: when the device's app.py says `from firmware import orders`,
it gets that device's orders, whose `store` is that device's store.

    ram = Ram({"firmware.hal_sim": board, "firmware.screen": screen,
               "time": clock, "gc": heap})
    app = ram.load("firmware.boot").start(["--flash", DIR, "--board", "sim"])

- PER_DEVICE: the modules that hold state (a `global` statement, a
  mutable module-level object, globals another module sets) or bind one
  that does (orders binds store; the packages hold their submodules): a
  copy per device, made when first imported, dropped with the Ram (a
  power cut).
- The other firmware and protocol modules the device loads (rating,
  journal, buttons, recover; errors, schema, rules, hmac256) hold nothing
  but constants, classes and functions: one copy, imported as usual and
  shared by every device (the same exception classes everywhere).
  tests/test_sim_fast_parity.py reads the sources to hold both lists true.
- The rest of what the firmware imports is the board's and the VM's,
  given by the caller (`subs`): the HAL (`firmware.hal_sim`), the screen,
  MicroPython's `time` (ticks over the device's clock) and `gc`.
  Standard modules (json, os, struct, binascii, hashlib) are CPython's;
  `micropython` does not exist here, so each module takes its own
  `const` fallback, as under any CPython.

What the unix port does otherwise than CPython is the VM's, not the
firmware's, and is supplied here: a binary file takes a str (`open`), and
`print` and `sys.print_exception` go to the device's console
(`Ram.console`), not to the simulator's stdout.
"""

import builtins
import importlib
import pathlib
import sys
import traceback
import types

ROOT = pathlib.Path(__file__).resolve().parent.parent

PER_DEVICE = frozenset((
    "firmware", "firmware.app", "firmware.boot", "firmware.link", "firmware.orders",
    "firmware.store", "protocol", "protocol.rx", "protocol.tx"))
SHARED = frozenset((
    "firmware.buttons", "firmware.journal", "firmware.rating", "firmware.recover",
    "protocol.errors", "protocol.hmac256", "protocol.rules", "protocol.schema"))
# What the board and the VM provide (Ram's `subs`), never loaded from a file.
BOARD = frozenset(("firmware.hal_sim", "firmware.screen", "time", "gc"))
CONSOLE_LINES = 8  # the console keeps the last few lines (a device prints little)

_CODE = {}  # module name -> its code, compiled once from its file
_ABSENT = set()  # names CPython has no module for (micropython)
_real_import = builtins.__import__


def source(name):
    """The file a firmware or protocol module is built from."""
    parts = name.split(".")
    if len(parts) == 1:
        return ROOT / parts[0] / "__init__.py"
    return ROOT.joinpath(*parts[:-1]) / (parts[-1] + ".py")


def code(name):
    c = _CODE.get(name)
    if c is None:
        path = source(name)
        c = _CODE[name] = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    return c


class _BinaryFile:
    """A file opened for binary writing that also takes a str, as
    MicroPython's do (firmware/store.py writes json.dumps() that way)."""

    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f

    def write(self, data):
        return self.f.write(data.encode() if isinstance(data, str) else data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _open(path, mode="r", *args, **kw):
    f = open(path, mode, *args, **kw)
    if "b" in mode and ("w" in mode or "+" in mode or "a" in mode):
        return _BinaryFile(f)
    return f


def _ram_of(depth):
    return sys._getframe(depth + 1).f_globals.get("__ram__")


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    ram = _ram_of(1)
    if ram is None or file is not None:
        return print(*args, sep=sep, end=end, file=file, flush=flush)
    ram.say(sep.join(str(a) for a in args) + end)


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    ram = globals.get("__ram__") if globals is not None else None
    if ram is None or level:
        return _real_import(name, globals, locals, fromlist, level)
    return ram.import_(name, fromlist)


# The builtins of every per-device module: CPython's, with the three above.
BUILTINS = dict(builtins.__dict__, __import__=_import, open=_open, print=_print)


class _Sys:
    """`sys` as the firmware uses it (sys.print_exception on a MemoryError)."""

    @staticmethod
    def print_exception(err):
        ram = _ram_of(1)
        text = "".join(traceback.format_exception(err))
        if ram is None:
            sys.stderr.write(text)
        else:
            ram.say(text)


SYS = _Sys()


class Ram:
    """One device's RAM: its copies of the PER_DEVICE modules, wired to each
    other, the shared modules it imported and the board's `subs`."""

    __slots__ = ("mods", "console", "said", "__weakref__")

    def __init__(self, subs):
        missing = BOARD - set(subs)
        if missing:
            raise ValueError("the board must provide %s" % ", ".join(sorted(missing)))
        self.mods = dict(subs)
        self.mods["sys"] = SYS
        self.console = []  # the last CONSOLE_LINES lines printed
        self.said = 0  # lines printed since power-on

    def say(self, text):
        for line in text.rstrip("\n").split("\n"):
            self.said += 1
            if len(self.console) >= CONSOLE_LINES:
                del self.console[0]
            self.console.append(line)

    def import_(self, name, fromlist):
        mod = self.load(name)
        if fromlist:
            for attr in fromlist:
                if attr != "*" and not hasattr(mod, attr) and self._known(name + "." + attr):
                    setattr(mod, attr, self.load(name + "." + attr))
            return mod
        top = name.partition(".")[0]
        return mod if top == name else self.load(top)

    @staticmethod
    def _known(name):
        return name in PER_DEVICE or name in SHARED or name in BOARD

    def load(self, name):
        """The device's module `name`, built or imported on first use."""
        mod = self.mods.get(name)
        if mod is not None:
            return mod
        parent, _, child = name.rpartition(".")
        pkg = self.load(parent) if parent else None
        if name in PER_DEVICE:
            mod = types.ModuleType(name)
            path = source(name)
            d = mod.__dict__
            d.update(__builtins__=BUILTINS, __ram__=self, __file__=str(path),
                     __package__=name if not parent else parent)
            if not parent:
                d["__path__"] = [str(path.parent)]
            self.mods[name] = mod
            try:
                exec(code(name), d)
            except BaseException:
                del self.mods[name]
                raise
        elif name in SHARED:
            mod = self.mods[name] = importlib.import_module(name)
        elif name.partition(".")[0] in ("firmware", "protocol"):
            # A module of the gateway's codec, or a board this is not.
            raise ImportError("a fast device does not load %s" % name)
        elif name in _ABSENT:
            raise ImportError("no module named %r" % name)  # `micropython`, each boot
        else:
            try:
                return _real_import(name)
            except ImportError:
                _ABSENT.add(name)  # a failed import is searched for again every time
                raise
        if pkg is not None and isinstance(pkg, types.ModuleType):
            setattr(pkg, child, mod)
        return mod

    def drop(self, name):
        """Forget a module (main.py drops boot-only code after boot)."""
        self.mods.pop(name, None)
        parent, _, child = name.rpartition(".")
        pkg = self.mods.get(parent)
        if pkg is not None and child in pkg.__dict__:
            delattr(pkg, child)

    def output(self):
        return "\n".join(self.console)

