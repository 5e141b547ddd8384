"""Temporary files of atomic writes: their name pattern, and cleaning up those a killed writer left.

A save writes ``.<target name>.<8 random characters>.tmp`` next to the target and renames it over the
target when complete. A process killed in between (SIGKILL, power loss) leaves that file behind.
:func:`remove_stale` runs before each atomic write of the same target and deletes such leftovers,
carefully: only names matching exactly our pattern for this target, only regular files owned by the
current user, only if not modified for ``STALE_SECONDS`` (a younger one may belong to a concurrent
writer that is still running).
"""
from __future__ import annotations

import os
import re
import stat
import time

#: A temp file untouched for this long cannot belong to a live writer (writes touch it continuously).
STALE_SECONDS = 15 * 60
SUFFIX = ".tmp"


def prefix_for(path: str) -> str:
    return f".{os.path.basename(path)}."


def remove_stale(path: str, *, max_age: float = STALE_SECONDS) -> list[str]:
    """Delete stale temp files of earlier writes to ``path``; returns the paths removed."""
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(prefix_for(path)) + r"[A-Za-z0-9_]{8}" + re.escape(SUFFIX) + r"\Z")
    removed = []
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not pattern.match(name):
            continue
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or now - st.st_mtime < max_age:
                continue
            os.unlink(full)
            removed.append(full)
        except OSError:
            continue
    return removed
