"""The wheel carries a native library (libltxvfs.so) but no Python extension module: it is
tagged for the platform (py3-none-<platform>), not for one Python version or ABI. `make python`
builds the library for glibc 2.17 and sets LTXVFS_WHEEL_PLATFORM to the manylinux tag that
says so (checked with `auditwheel show` by `make python-test`); without it, the tag is this
machine's platform."""

import os
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

LIBRARY = Path(__file__).parent / "src" / "ltxvfs" / "libltxvfs.so"


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def finalize_options(self):
        if not LIBRARY.is_file():
            raise SystemExit(f"{LIBRARY} is missing: build the wheel with `make python`")
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        # A tag as given ("." joins a compressed tag set); else this machine's platform.
        platform = os.environ.get("LTXVFS_WHEEL_PLATFORM") or sysconfig.get_platform().replace(
            "-", "_"
        ).replace(".", "_")
        return "py3", "none", platform


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
