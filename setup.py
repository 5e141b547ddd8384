"""Build the optional C speedups.

Every C module here has a pure numpy/Python reference implementation beside it that the tests
compare it against and that squeezefmt uses when the extension is absent. A failed compile is
therefore not an error: the package installs without it and says so.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# (module name, C source) pairs; a source that is not in the tree is simply skipped.
_C_MODULES = [
    ("squeezefmt.entropy._gammac", "squeezefmt/entropy/_gammac.c"),
    ("squeezefmt.entropy._huffmanc", "squeezefmt/entropy/_huffmanc.c"),
    ("squeezefmt.entropy._cabacc", "squeezefmt/entropy/_cabacc.c"),
    ("squeezefmt.codecs._bytegroupc", "squeezefmt/codecs/_bytegroupc.c"),
    ("squeezefmt._decodec", "squeezefmt/_decodec.c"),
    ("squeezefmt._crcfast", "squeezefmt/_crcfast.c"),
]

#: Helpers every C module includes (header only); a change rebuilds them all. Also in MANIFEST.in.
_SHARED_HEADER = "squeezefmt/_cshared.h"


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when a C module does not compile."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the fallback"
            self._warn(f"C speedups not built ({exc}); using the pure Python/numpy fallback")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(f"{ext.name} not built ({exc}); using its pure Python/numpy fallback")

    @staticmethod
    def _warn(msg):
        sys.stderr.write(f"WARNING: {msg}\n")


here = os.path.dirname(os.path.abspath(__file__))
ext_modules = [
    Extension(name, [src], depends=[_SHARED_HEADER], extra_compile_args=["-O3", "-std=c99"])
    for name, src in _C_MODULES
    if os.path.exists(os.path.join(here, src))
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
