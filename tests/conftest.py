import pathlib
import sys

# tests/ on sys.path, as it is when MicroPython runs a test file directly,
# so the dual-interpreter tests can `import mpcompat`.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
