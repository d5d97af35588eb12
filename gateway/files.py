"""Files that hold secrets (keys, passwords, tokens): written whole or not at
all, and readable by their owner only from the first byte."""

import os
import pathlib


def write_private(path, data):
    """Write `data` (bytes or str) to `path` atomically (temp file, fsync,
    rename), created 0600: never a moment when others could read it, never
    half a file after a power cut."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data if isinstance(data, bytes) else data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
