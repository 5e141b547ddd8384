"""Which implementation an entropy coder uses by default: its C extension or its pure reference.

Each coder module (huffman, cabac) keeps one :class:`BackendSwitch`. The default is ``"c"`` when the
extension was built, ``"python"`` otherwise or when ``SQUEEZEFMT_PURE_PYTHON=1`` is set at import;
every coder function also takes ``backend=`` to override it for one call.
"""
from __future__ import annotations

import os


class BackendSwitch:
    """The default backend of one coder, and the rule that resolves a requested one."""

    def __init__(self, coder: str, extension: str, module) -> None:
        self.coder, self.extension, self.module = coder, extension, module
        pure = os.environ.get("SQUEEZEFMT_PURE_PYTHON") == "1"
        self.default = "python" if module is None or pure else "c"

    def set(self, name: str) -> str:
        """Set the default (``"c"``, ``"python"`` or ``"auto"``); returns the previous one."""
        previous, self.default = self.default, self.resolve(name)
        return previous

    def resolve(self, name: str | None) -> str:
        """``name`` checked (``None``: the default; ``"auto"``: C when built)."""
        if name is None:
            return self.default
        if name == "auto":
            return "c" if self.module is not None else "python"
        if name not in ("c", "python"):
            raise ValueError(f"unknown {self.coder} backend {name!r} (choose 'c', 'python' or 'auto')")
        if name == "c" and self.module is None:
            raise ValueError(f"the C extension squeezefmt.entropy.{self.extension} is not built "
                             "(run `python setup.py build_ext --inplace`)")
        return name
