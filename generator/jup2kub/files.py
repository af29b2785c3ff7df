"""Writing outputs atomically: a reader sees the old file or the new one, never half of one;
and one way to say that an output cannot be written where the user asked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jup2kub.errors import UsageError


@contextlib.contextmanager
def writable(what: str, where: Path, hint: str) -> Iterator[None]:
    """An ``OSError`` while writing ``what`` to ``where`` becomes a usage error (exit code 2)
    naming the path, with ``hint`` (which option to change)."""
    try:
        yield
    except OSError as exc:
        raise UsageError(
            f"cannot write {what}: {exc.strerror or exc}", where=str(where), hint=hint
        ) from None


def atomic_write_bytes(target: Path, data: bytes) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks: value files and images can be large."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
