"""Run ``flask`` with the given arguments in this process and write its own peak resident memory at exit.

Usage: ``python bench/peak.py OUTFILE --app billcore payments cleanup``. OUTFILE gets the peak in KiB.

bench/batch.py starts every command through this instead of reading ``ru_maxrss`` from ``wait4``: Linux
carries the high-water mark of the address space a child was started from over its ``exec`` (Python's
``subprocess`` vforks, so that is the parent's own peak), and the benchmark process that has just
bulk-inserted 100,000 rows sits at about 220 MB: every command it started reported at least that much.
``VmHWM`` in /proc/self/status is the high-water mark of this process's address space alone.
"""
from __future__ import annotations

import atexit
import sys
from pathlib import Path


def own_peak_kib() -> int:
    """This process's own peak resident memory (``VmHWM``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main() -> None:
    out = Path(sys.argv[1])
    atexit.register(lambda: out.write_text(str(own_peak_kib())))
    sys.argv = ["flask", *sys.argv[2:]]
    from flask.cli import main as flask_main

    flask_main()


if __name__ == "__main__":
    main()
