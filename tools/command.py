"""The `hcp` command, as the project's own child processes run it (`hcp
gateway run` under the simulator, the benchmarks and the tests): the entry
point installed beside the running interpreter (a virtualenv's bin/), else
this interpreter running the package (`python -m tools`). Never a path in a
checkout, never an `hcp` found elsewhere on PATH (another installation):
the child runs the code its parent runs, however it was installed."""

import pathlib
import sys


def hcp_argv():
    """argv[:n] that runs `hcp`: append the subcommand and its options."""
    beside = pathlib.Path(sys.executable).parent / "hcp"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "tools"]
