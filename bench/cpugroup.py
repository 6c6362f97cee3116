"""CPU weight for a benchmark's processes, as systemd's ``CPUWeight=`` gives a unit (Linux cgroups).

A production host runs billcore's web workers, its batch jobs and PostgreSQL as separate services, and
the kernel shares the cores between their control groups by weight (systemd's default is 100 each). A
benchmark that starts everything from one shell puts all of it in one group, where 40 threads of a batch
job outweigh two web workers. :class:`CpuGroup` puts a process (and everything it starts) in a group of
its own with a weight, so a benchmark can run a job as a ``CPUWeight=10`` timer unit would, or give
processes that stand for other machines (an attacker, a gateway) the least weight the kernel knows.

Works with cgroup v2 (``cpu.weight``) and with v1's ``cpu`` controller (``cpu.shares``, converted as
systemd does: weight × 1024 / 100). Needs write access to the cgroup file system (root, or a delegated
subtree): without it :class:`CpuGroup` refuses to start, so a benchmark asked for weights never measures
without them.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


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
    """A control group with CPU ``weight`` (1-10000, systemd's scale; 100 is every service's default).

    Pass :meth:`enter` as ``preexec_fn`` to ``subprocess.Popen`` (or call it first thing in a
    ``multiprocessing`` child), so the process is in the group before it starts any worker or thread.
    :meth:`remove` moves what is left to the parent and deletes the group.
    """

    def __init__(self, name: str, weight: int) -> None:
        found = _hierarchy()
        if found is None:
            raise RuntimeError("no writable cgroup cpu controller (run as root, or without the CPU weights)")
        parent, self.version = found
        if not 1 <= weight <= 10000:
            raise ValueError("a CPU weight is between 1 and 10000")
        self.path = parent / f"{name}-{uuid.uuid4().hex[:8]}"
        if self.version == "v2":
            subtree = parent / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu")
        self.path.mkdir()
        if self.version == "v2":
            (self.path / "cpu.weight").write_text(str(weight))
        else:
            (self.path / "cpu.shares").write_text(str(max(2, weight * 1024 // 100)))
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
