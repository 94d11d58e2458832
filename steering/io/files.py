"""Writing files atomically: a reader (or a crash) never sees a half-written file, and a failed
write leaves the previous file in place.

Permissions follow what a plain ``open(path, "w")`` would give, not ``tempfile.mkstemp``'s 0600:
a new file gets 0666 minus the process umask (so vectors written by one user stay readable by an
app running as another, e.g. in a container), and a file that is replaced keeps its mode.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

from steering.config import PROJECT_ROOT


def _create_temporary(path: Path) -> str:
    """Create an empty hidden file next to `path` with mode 0666 & ~umask; return its name.

    The name ends with `path`'s suffix, so writers that choose a format by extension (savefig) work.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            # like open(..., "w"): the kernel applies the umask (and any default ACL) to 0666
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(tmp)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary path)`` in `path`'s folder, then rename the result over `path`.

    Args:
        path: the file to create or replace (its folder is created if missing).
        write: writes the whole content to the temporary path it is given (a str).

    A new file gets mode 0666 & ~umask; a replaced file keeps its permission bits. If `write` raises,
    the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        # 0666 & ~umask as the kernel applied it; read back rather than set by os.umask (not thread-safe)
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(tmp)  # some writers recreate the file with their own mode (safetensors: 0600)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its mode
        except FileNotFoundError:
            pass
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically (see atomic_write)."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, payload: Any, indent: int = 2) -> None:
    """Write `payload` as indented UTF-8 JSON (non-ASCII kept) to `path` atomically."""
    write_text(path, json.dumps(payload, ensure_ascii=False, indent=indent) + "\n")


def display_path(path: Path) -> str:
    """`path` relative to the checkout when it lies inside it (as recorded in metadata), else as given."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
