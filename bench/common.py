"""Shared by the benchmarks: the result shape and small statistics."""

import os
import time


def result(name, value, unit, reference, params, target=None, higher_is_better=True, **extra):
    """The one JSON object a benchmark prints. ratio = value / reference for
    rates (higher is better), reference / value for times, so > 1 always
    means "better than the reference"."""
    if reference and value:
        ratio = value / reference if higher_is_better else reference / value
    else:
        ratio = None
    out = {"name": name, "value": _round(value), "unit": unit, "reference": _round(reference),
           "ratio": _round(ratio), "target": target, "params": params, "host": host()}
    out.update({k: _round(v) for k, v in extra.items()})
    return out


def _round(v):
    if isinstance(v, float):
        return round(v, 4 if abs(v) < 10 else 1)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def host():
    return {"cpus": os.cpu_count(), "python": "%d.%d" % os.sys.version_info[:2]}


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Deadline:
    """Every benchmark stops by itself: check .left before each unit of work."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    @property
    def left(self):
        return self.end - time.monotonic()

    @property
    def over(self):
        return self.left <= 0
