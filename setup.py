"""Build hook for the optional C speedup; everything else is in pyproject.toml.

``wshub.protocol._speedups`` is compiled when a C compiler is available. The extension is
optional: without a compiler the install still succeeds and wshub runs its pure-Python
protocol code, which is the reference implementation. ``WSHUB_NO_EXTENSIONS=1`` at
install time skips the build.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("WSHUB_NO_EXTENSIONS", "") not in ("1", "true", "yes"):
    ext_modules.append(
        Extension(
            "wshub.protocol._speedups",
            ["src/wshub/protocol/_speedups.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    )

setup(ext_modules=ext_modules)
