"""Process memory on Linux (/proc/self): current and peak RSS, and resetting the peak.

Shared by the memory benchmarks, the fuzzer's memory cap and the hostile-input tests.
"""
from __future__ import annotations

import os


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` memory field (``"VmRSS"``, ``"VmHWM"``) in bytes; 0 when unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Probe:
    """The same three measurements on file descriptors kept open: ``pread`` of a /proc file
    regenerates it, so a fuzzer can take them around every execution for a few microseconds
    (opening /proc/self/status costs ~50 us; a kept descriptor ~20 us, statm ~6 us).

    Descriptors belong to the process that opened them (``/proc/self`` is resolved at open time):
    after a fork the child reopens its own on first use.
    """

    def __init__(self):
        self._pid = None
        self._status = self._statm = self._clear = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _fds(self) -> bool:
        if self._pid != os.getpid():
            self.close()
            self._pid = os.getpid()
            try:
                self._status = os.open("/proc/self/status", os.O_RDONLY)
                self._statm = os.open("/proc/self/statm", os.O_RDONLY)
                self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
            except OSError:
                self.close()
                self._pid = os.getpid()
        return self._clear is not None

    def close(self) -> None:
        for fd in (self._status, self._statm, self._clear):
            if fd is not None:
                os.close(fd)
        self._status = self._statm = self._clear = None

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS; False when /proc does not allow it."""
        if not self._fds():
            return False
        try:
            os.write(self._clear, b"5")
            return True
        except OSError:
            return False

    def rss(self) -> int:
        """Current resident set in bytes (``/proc/self/statm``, equal to VmRSS)."""
        if not self._fds():
            return proc_status("VmRSS")
        return int(os.pread(self._statm, 256, 0).split()[1]) * self._page

    def peak(self) -> int:
        """Peak resident set since the last reset, in bytes (VmHWM)."""
        if not self._fds():
            return proc_status("VmHWM")
        text = os.pread(self._status, 8192, 0)
        at = text.index(b"VmHWM:")
        return int(text[at + 6: text.index(b"kB", at)]) * 1024
