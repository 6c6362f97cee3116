"""CPU weight for a benchmark's processes, as systemd's ``CPUWeight=`` gives a unit (Linux cgroups).

A production host runs billcore's web workers, its batch jobs and PostgreSQL as separate services, and
the kernel shares the cores between their control groups by weight (systemd's default is 100 each). A
benchmark that starts everything from one shell puts all of it in one group, where 40 threads of a batch
job outweigh two web workers. :class:`CpuGroup` puts a process (and everything it starts) in a group of
its own with a weight, so a benchmark can run a job as a ``CPUWeight=10`` timer unit would, or give
processes that stand for other machines (an attacker, a gateway) the least weight the kernel knows.

Works with cgroup v2 (``cpu.weight``) and with v1's ``cpu`` controller (``cpu.shares``, converted as
systemd does: weight × 1024 / 100). The weight may also be :data:`IDLE`, systemd's ``CPUWeight=idle``
(``cpu.idle``, Linux 5.15 and later): the group then runs only on CPU time no other group wants, and a
task of any other group that wakes up takes the core from it at once, where a low weight only shortens
its share and lets it finish its time slice first.

Needs write access to the cgroup file system (root, or a delegated subtree): without it
:class:`CpuGroup` refuses to start, so a benchmark asked for weights never measures without them.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
IDLE = "idle"  # systemd's CPUWeight=idle


def parse_weight(text: str) -> int | str:
    """A weight as a command line gives it: 1-10000, or ``idle`` (for argparse's ``type=``)."""
    if text.strip().lower() == IDLE:
        return IDLE
    try:
        weight = int(text)
    except ValueError:
        raise ValueError(f"a CPU weight is 1-10000 or {IDLE!r}, not {text!r}") from None
    if not 1 <= weight <= 10000:
        raise ValueError(f"a CPU weight is 1-10000 or {IDLE!r}, not {text!r}")
    return weight


def _hierarchy() -> tuple[Path, str] | None:
    """The folder under which groups with a CPU weight can be made, and the version ("v1" or "v2")."""
    v1 = CGROUP_ROOT / "cpu"
    if (v1 / "cpu.shares").exists() and os.access(v1, os.W_OK):
        return v1, "v1"
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(CGROUP_ROOT, os.W_OK):
        return CGROUP_ROOT, "v2"
    return None


class CpuGroup:
    """A control group with CPU ``weight`` (1-10000, systemd's scale; 100 is every service's default), or
    :data:`IDLE`.

    Pass :meth:`enter` as ``preexec_fn`` to ``subprocess.Popen`` (or call it first thing in a
    ``multiprocessing`` child), so the process is in the group before it starts any worker or thread.
    :meth:`remove` moves what is left to the parent and deletes the group.
    """

    def __init__(self, name: str, weight: int | str) -> None:
        found = _hierarchy()
        if found is None:
            raise RuntimeError("no writable cgroup cpu controller (run as root, or without the CPU weights)")
        parent, self.version = found
        value = parse_weight(str(weight))
        self.path = parent / f"{name}-{uuid.uuid4().hex[:8]}"
        if self.version == "v2":
            subtree = parent / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu")
        self.path.mkdir()
        if value == IDLE:
            idle = self.path / "cpu.idle"
            if not idle.exists():
                self.path.rmdir()
                raise RuntimeError("this kernel has no cpu.idle (Linux 5.15 or later has)")
            idle.write_text("1")
        elif self.version == "v2":
            (self.path / "cpu.weight").write_text(str(value))
        else:
            (self.path / "cpu.shares").write_text(str(max(2, int(value) * 1024 // 100)))
        self._procs = str(self.path / "cgroup.procs")

    def enter(self) -> None:
        """Move the calling process into the group (its later children follow it)."""
        with open(self._procs, "w") as procs:  # "0": the writing process itself
            procs.write("0")

    def remove(self) -> None:
        """Move any process still in the group to the parent, then delete the group."""
        parent_procs = self.path.parent / "cgroup.procs"
        try:
            for pid in (self.path / "cgroup.procs").read_text().split():
                try:
                    parent_procs.write_text(pid)
                except OSError:
                    pass  # it ended meanwhile
            self.path.rmdir()
        except OSError:
            pass  # already gone, or a process that would not move keeps it: left for the operator


def entering(group: CpuGroup | None) -> Callable[[], None] | None:
    """``preexec_fn`` for ``subprocess.Popen``: the child enters ``group`` before it runs (None: no group)."""
    return group.enter if group is not None else None
