"""Where the CLI writes: one policy for every output, so no command leaves a folder half-written or mixed, writes
through a symlink or onto a device, or overwrites its own input.

* :func:`check_output_path` refuses a bad ``--out`` in one line before any work is done, and creates nothing.
* :func:`staged_folder` builds a whole output folder beside its destination and swaps it in only on success.
* :func:`staged_file` / :func:`write_text_atomic` do the same for one file.
* :func:`safe_name` turns a config or model name into a folder name that cannot leave ``reports/``.

``quantizer/outputs.py`` holds the quantizer's copy of the file checks (the quantizer does not import archsim).
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterable, Iterator

from archsim.errors import UsageError

PathLike = str | os.PathLike[str]


def safe_name(text: str) -> str:
    """One path component from ``text``: letters, digits, ``-_.`` only, no ``..``, no leading dot, never empty."""
    name = re.sub(r"\.{2,}", "_", "".join(c if c.isalnum() or c in "-_." else "_" for c in text))
    return ("_" + name[1:] if name.startswith(".") else name) or "_"


def check_output_path(path: PathLike | None, option: str, inputs: Iterable[PathLike | None] = (), *,
                      folder: bool = False, owned: Collection[str] | None = None) -> Path:
    """``path`` as a Path if a command may write it (a file, or a folder with ``folder``); else a one-line
    UsageError naming ``option``. Refused: an empty path; a symlink; anything that is not a regular file or folder
    (a device, FIFO, socket); a file where a folder is expected and the reverse; one of the command's ``inputs`` (or,
    for a folder, a folder holding one); a place whose nearest existing parent cannot be written. With ``owned`` (the
    names a folder command writes, for a folder that :func:`staged_folder` will replace whole): a folder holding
    other names, or the current folder. Creates nothing."""
    text = "" if path is None else os.fspath(path)
    if not text.strip():
        raise UsageError(f"{option}: empty path")
    out = Path(text).expanduser()
    what = "folder" if folder else "file"
    problem = _kind_problem(out, folder)
    for given in inputs:
        if problem is None and given is not None and os.fspath(given):
            inp = Path(given).expanduser()
            if _same(out, inp):
                problem = f"would overwrite the input {inp}; choose another {what}"
            elif folder and _inside(inp, out):
                problem = f"holds the input {inp}, which the new folder would replace; choose another folder"
    if problem is None and folder and owned is not None:
        if _inside(Path.cwd(), out):
            problem = "holds the current folder, which the new one would replace; give a subfolder"
        elif out.is_dir():
            problem = _foreign_problem(out, owned)
    if problem is None:
        problem = _parent_problem(out)
    if problem is not None:
        raise UsageError(f"{option} {out}: {problem}")
    return out


@contextmanager
def staged_folder(out: PathLike, owned: Collection[str] | None = None) -> Iterator[Path]:
    """Yield an empty folder beside ``out``; when the block succeeds it replaces ``out`` whole (an atomic exchange
    where the OS has one, else rename old aside, new in, remove old). On any exception, KeyboardInterrupt included,
    ``out`` is untouched and nothing is left behind (nor the parent folders this created). With ``owned``, an
    existing ``out`` holding other names is refused, so a swap never deletes a user's files."""
    target = _absolute(out)
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()):
        raise UsageError(f"{target}: is not a folder; it is left as it is")
    if owned is not None and target.is_dir() and (problem := _foreign_problem(target, owned)):
        raise UsageError(f"{target}: {problem}")
    with _scratch(target) as scratch:
        staged = scratch / "new"
        staged.mkdir()
        yield staged
        _swap(staged, target, scratch / "old")


@contextmanager
def staged_file(path: PathLike) -> Iterator[Path]:
    """Yield a path to write in a hidden folder beside ``path``; the file replaces ``path`` (os.replace) only if the
    block succeeds. Whatever the writer leaves in that folder (its own temporary files) is removed."""
    target = _absolute(path)
    with _scratch(target) as scratch:
        tmp = scratch / target.name
        yield tmp
        os.replace(tmp, target)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` whole or not at all; return the path."""
    with staged_file(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return Path(path)


# ---- helpers ------------------------------------------------------------------------------------------------------


def _absolute(path: PathLike) -> Path:
    """Absolute and normalised (no ``.`` or ``..``), without following symlinks, so ``name`` and ``parent`` exist."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _kind_problem(out: Path, folder: bool) -> str | None:
    if out.is_symlink():
        return "is a symbolic link; give the path it points to, or a new name"
    try:
        mode = out.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return None if folder else "is a folder, expected a file name"
    if stat.S_ISREG(mode):
        return "is a file, expected a folder" if folder else None
    return f"is a device, FIFO or socket, not a {'folder' if folder else 'file'}; give another path"


def _parent_problem(out: Path) -> str | None:
    """Why the folder that will hold ``out`` cannot be made or written, judged at its nearest existing ancestor."""
    parent = _absolute(out).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create the folder ({parent} is not a folder)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create the folder ({parent}: permission denied)"
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _absolute(a).resolve() == _absolute(b).resolve()


def _inside(path: Path, folder: Path) -> bool:
    return _absolute(path).resolve().is_relative_to(_absolute(folder).resolve())


def _foreign_problem(folder: Path, owned: Collection[str]) -> str | None:
    """Names in ``folder`` that are neither ``owned`` nor a temporary file an earlier writer left (``.NAME.*.tmp``)."""
    def ours(name: str) -> bool:
        return name in owned or any(name.startswith(f".{o}.") and name.endswith(".tmp") for o in owned)

    try:
        foreign = sorted(n for n in os.listdir(folder) if not ours(n))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return f"holds files this command did not write ({shown}); give a new or empty folder"


@contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``target`` (same file system, so renames out of it are atomic), creating the
    missing parents; always removed at the end, with the parents it created when the block fails."""
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    scratch = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    created: list[Path] = []
    done = False
    try:
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                continue
            created.append(p)
        scratch.mkdir()
        yield scratch
        done = True
    finally:
        _discard(scratch)
        for p in reversed(created) if not done else ():
            try:
                p.rmdir()  # only while empty
            except OSError:
                break


def _discard(path: Path) -> None:
    """Remove a folder tree; a Ctrl-C during the removal still finishes it before it propagates."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except KeyboardInterrupt:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _swap(new: Path, target: Path, aside: Path) -> None:
    """Put folder ``new`` at ``target``; a previous ``target`` ends at ``aside`` (and is removed with it)."""
    if not os.path.lexists(target):
        os.rename(new, target)
    elif not _exchange(new, target):
        try:
            os.rename(target, aside)
            os.rename(new, target)
        except BaseException:
            if aside.exists() and not os.path.lexists(target):
                os.rename(aside, target)  # put the previous folder back
            raise


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the OS or file system has
    no such call, so the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # no renameat2 in this C library, or no C library to ask
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not supported by this kernel or file system
        return False
    raise OSError(code, os.strerror(code), str(b))
