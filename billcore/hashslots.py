"""At most ``LOGIN_HASH_SLOTS`` password checks at once on a host, whatever the number of workers, and
at most ``LOGIN_HASH_RATE`` of them per host in a window.

A password check (scrypt) costs a CPU core for a sixth of a second or more. Guessers from many addresses
at random e-mails pass every per-address and per-account limit, and each of their attempts costs a hash
(an unknown e-mail is hashed too, so that timing does not tell which e-mails exist): without a cap they
keep every worker and core busy and the gateways' notifications queue behind them (bench/hardening.py).
A check that finds no free slot, or comes beyond the rate, is answered at once (429, "try again in a
moment") without hashing: the CPU that guessing can take is bounded (rate x cost of a hash).
The slots are ``flock`` locks on files in ``<instance>/run``, so every worker process of the host
shares them; the kernel frees a slot when its holder exits, even when killed.
"""
from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import current_app

from .config import private_folder
from .limits import allow


@contextmanager
def password_slot() -> Iterator[bool]:
    """Take a free slot for one password check: yields True while holding it, False when none is free."""
    rate = current_app.config.get("LOGIN_HASH_RATE")
    if rate and not allow(rate, "password-hash", socket.gethostname()):  # per host: the CPU is the host's
        yield False
        return
    slots = int(current_app.config["LOGIN_HASH_SLOTS"])
    if slots <= 0:  # no cap
        yield True
        return
    folder = Path(current_app.instance_path) / "run"
    private_folder(folder)
    for index in range(slots):
        fd = os.open(folder / f"login-slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    yield False
