"""Small file helpers shared by every part: atomic writes and hashing.

Everything latentzoo writes (shards, checkpoints, weights, tables) goes through
:func:`atomic_path`, so an interrupted process never leaves a half-written file under its final
name: the data is written to a temporary file in the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: ``mkstemp`` creates 0600 files; finished files get the mode of an ordinary ``open()`` instead.
FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync, give it the ordinary file mode
    (:data:`FILE_MODE`, so others in the group can read it) and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def cache_dir() -> Path:
    """Root of latentzoo's cache (weights, 0 A.D. meshes, benchmark stimuli): ``$LATENTZOO_CACHE``
    or ``~/.cache/latentzoo``."""
    return Path(os.environ.get("LATENTZOO_CACHE") or Path.home() / ".cache" / "latentzoo")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
