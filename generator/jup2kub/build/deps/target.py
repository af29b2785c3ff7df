"""The platform the step images are built for: Python version, architecture, glibc, and the
wheel tags and environment markers that follow from them."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags

from jup2kub.errors import UsageError

_ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}

_MANYLINUX_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Target:
    """The image's interpreter and platform, which the wheels must match (not the host's)."""

    python: tuple[int, int] = (3, 11)
    platform: str = "linux/amd64"
    glibc: tuple[int, int] = (2, 36)

    def __post_init__(self) -> None:
        if self.platform not in _ARCHES:
            raise UsageError(
                f"platform {self.platform!r} is not supported",
                hint="use one of: " + ", ".join(sorted(_ARCHES)),
            )

    @classmethod
    def host(cls, platform_: str | None = None) -> Target:
        """This interpreter's version and glibc: right when the base image matches the host."""
        libc, version = platform.libc_ver()
        glibc = (2, 17)
        if libc == "glibc" and re.match(r"^\d+\.\d+", version):
            major, minor = version.split(".")[:2]
            glibc = (int(major), int(minor))
        return cls(sys.version_info[:2], platform_ or "linux/amd64", glibc)

    @property
    def machine(self) -> str:
        return _ARCHES[self.platform]

    @property
    def abi(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    def platforms(self) -> list[str]:
        """manylinux platform tags this glibc accepts, best (newest) first."""
        out = []
        for minor in range(self.glibc[1], 4, -1):
            out.append(f"manylinux_2_{minor}_{self.machine}")
            legacy = _MANYLINUX_LEGACY.get((2, minor))
            if legacy:
                out.append(f"{legacy}_{self.machine}")
        return out

    def tags(self) -> list[Tag]:
        """Every wheel tag the target accepts, in pip's order of preference."""
        plats = self.platforms()
        return [
            *cpython_tags(self.python, abis=[self.abi], platforms=plats),
            *compatible_tags(self.python, interpreter=self.abi, platforms=plats),
        ]

    def marker_environment(self) -> dict[str, str]:
        major, minor = self.python
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{major}.{minor}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{major}.{minor}.0",
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
        }

    def describe(self) -> str:
        py, libc = self.python, self.glibc
        return f"CPython {py[0]}.{py[1]}, {self.platform}, glibc {libc[0]}.{libc[1]}"
