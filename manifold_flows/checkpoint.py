"""Checkpoints that can be trusted: atomic writes, a content checksum, data provenance, and a run-folder lock."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import torch

FORMAT = "manifold-flows checkpoint"
FORMAT_VERSION = 2
"""Bumped when the layout of a checkpoint changes; older layouts are refused with a message."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, corrupt, foreign, or for other data."""


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """Write text atomically (temporary file, then rename)."""
    atomic_write_bytes(text.encode("utf-8"), path)


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content: every key, value, tensor dtype, shape and byte, in a fixed order.

    Independent of how ``torch.save`` lays the file out, so it checks what was *loaded*: a flipped
    byte in tensor data or in the pickled structure changes it.
    """
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            h.update(b"{%d" % len(o))
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(b"[%d" % len(o))
            for v in o:
                walk(v)
        elif isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(f"{type(o).__name__}:{o!r}".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    """Write ``state`` (a dict of tensors, numbers, strings, lists and dicts) with its format tag and checksum.

    The file is a plain ``torch.save`` dict: ``torch.load(path)`` reads it; :func:`load_checkpoint`
    also verifies it.
    """
    from . import __version__

    body = dict(state, format=FORMAT, format_version=FORMAT_VERSION, package_version=__version__)
    body["sha256"] = content_digest(body)
    buf = io.BytesIO()
    torch.save(body, buf)
    atomic_write_bytes(buf.getvalue(), path)


_READ_ERRORS = (EOFError, OSError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError,
                AttributeError, TypeError, IndexError, UnicodeDecodeError)
"""What ``torch.load`` raises on truncated, empty, random or tampered files."""


def load_checkpoint(path: Path, *, map_location: Any = "cpu", require: Iterable[str] = ()) -> Dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the file.
        map_location: passed to ``torch.load``.
        require: keys the caller needs (their absence means another kind of file).

    Raises:
        CheckpointError: with a one-line message naming the file and the problem: missing,
            empty, not a checkpoint, truncated or corrupt (checksum mismatch), an older layout,
            or without the required entries.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except _READ_ERRORS as e:
        first = str(e).splitlines()[0] if str(e) else ""
        if first.startswith("Weights only load failed"):  # torch's long advice about weights_only: not ours to give
            first = "not a torch file of tensors and plain values"
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {first[:200]}") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a manifold-flows checkpoint")
    if ck.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint layout {ck.get('format_version')!r}; this version of "
                              f"manifold-flows reads layout {FORMAT_VERSION} (retrain, or use the version that wrote "
                              f"it: {ck.get('package_version')})")
    stored = ck.pop("sha256", None)
    if stored != content_digest(ck):
        raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match its checksum")
    missing = [k for k in require if k not in ck]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}: not the kind of checkpoint expected here")
    return ck


def data_fingerprint(data: Dict[str, Any]) -> Dict[str, Any]:
    """Sizes and SHA-256 digests of a data set's train/val/test splits (float64 coordinates) and its manifold.

    Stored in checkpoints, so that ``evaluate``, ``sample`` and ``--resume`` notice when the file
    a run was trained on has changed since.
    """
    out: Dict[str, Any] = {"manifold": repr(data["manifold"])}
    for split in ("train", "val", "test"):
        x = data[split].detach().to(torch.float64).cpu().contiguous()
        out[f"n_{split}"] = int(x.shape[0])
        out[f"{split}_sha256"] = hashlib.sha256(x.numpy().tobytes()).hexdigest()
    return out


def fingerprint_changes(saved: Dict[str, Any], now: Dict[str, Any]) -> Optional[str]:
    """A one-line description of how ``now`` differs from ``saved`` (both from :func:`data_fingerprint`), or None."""
    diffs = []
    for split in ("train", "val", "test"):
        a, b = saved.get(f"n_{split}"), now.get(f"n_{split}")
        if a != b:
            diffs.append(f"n_{split} {a} -> {b}")
        elif saved.get(f"{split}_sha256") != now.get(f"{split}_sha256"):
            diffs.append(f"{split} points differ")
    if saved.get("manifold") != now.get("manifold"):
        diffs.append(f"manifold {saved.get('manifold')} -> {now.get('manifold')}")
    return ", ".join(diffs) or None


class RunLock:
    """An exclusive lock on a run folder (``OUT/.lock``), held while a run trains in it.

    A second run pointed at the same folder fails at once instead of overwriting the first
    one's checkpoints. The lock is an advisory ``flock`` that the operating system releases when
    the process ends, killed or not, so a stale lock never blocks a resume.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock (non-blocking) and write this process's id into the lock file.

        Raises:
            CheckpointError: another process holds the lock.
        """
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CheckpointError(f"run folder {self.path.parent} is in use by another run (pid {holder}); "
                                  "wait for it or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock if this object holds it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
