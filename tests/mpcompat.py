# Shared by the tests that also run under MicroPython: finds the repo root,
# puts it on sys.path, and runs test_* functions when a file is run as a
# script (pytest collects the same functions itself).

import sys

try:
    import os

    _HERE = os.path.dirname(os.path.abspath(__file__))
except AttributeError:  # MicroPython's os has no os.path
    _HERE = sys.path[0]
ROOT = _HERE[: -len("/tests")] if _HERE.endswith("/tests") else _HERE + "/.."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def raises(exc, fn, *args):
    """Call fn(*args); return the `exc` it raised, fail if it raised none."""
    try:
        fn(*args)
    except exc as err:
        return err
    raise AssertionError("expected %s from %r" % (exc.__name__, fn))


def main(namespace):
    import gc

    failed = 0
    names = sorted([n for n in namespace if n.startswith("test_")])
    for name in names:
        try:
            namespace[name]()
            print("ok", name)
        except Exception as err:  # report every failure, then exit non-zero
            failed += 1
            print("FAIL", name, repr(err))
        gc.collect()
    # The plain closing line that any runner's reader understands.
    print("%d passed, %d failed" % (len(names) - failed, failed))
    sys.exit(1 if failed else 0)
