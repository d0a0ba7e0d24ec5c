"""Following log files: the rotation-safe `Tailer`, the record-grouper base, and the config and check bases of file-tailing checks."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from checks.base import CheckConfig
from checks.config import ByteSize, ConfigError
from checks.model import Reading

# ---------------------------------------------------------------- multi-line grouping


class LineGrouper:
    """Base of the record splitters a `Tailer` feeds line by line: `feed` returns a finished record when a
    line starts the next one; `take` finishes the pending one. Subclasses reset their own state in `_reset`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def feed(self, ln: str) -> str | None:
        raise NotImplementedError

    def _join(self) -> str:
        return "\n".join(self.lines)

    def _reset(self) -> None:
        """Forget what the finished record set (called by `take`)."""

    def take(self) -> str | None:
        if not self.lines:
            return None
        text = self._join()
        self.lines = []
        self._reset()
        return text

    @property
    def pending(self) -> bool:
        return bool(self.lines)


# ---------------------------------------------------------------- tailing


@dataclass(slots=True)
class _FileState:
    path: str
    dev: int
    ino: int
    #: everything before this offset has been turned into readings (or is not part of a record)
    offset: int
    fh: Any = None
    #: where the pending (unfinished) record starts
    pending_offset: int | None = None
    grouper: Any = None


class Tailer:
    """Follows files by glob: new complete lines since the last call, across rotation and truncation.

    State (device, inode, offset of the first byte not yet consumed) persists to a JSON file, so a
    restart neither loses nor repeats lines. A partial last line (no newline yet) is left for later.
    """

    def __init__(self, patterns: list[str], state_file: str | None, *, from_beginning: bool, max_read: int,
                 max_line: int, max_lines: int = 500, grouper: Any = None) -> None:
        if grouper is None:
            from checks.exception_log import Grouper  # imported late: that module builds on this one

            grouper = lambda: Grouper(max_lines)  # noqa: E731
        #: builds the record splitter of one file (default: the trace `Grouper` of checks.exception_log)
        self.new_grouper = grouper
        self.patterns = patterns
        self.state_file = state_file
        self.from_beginning = from_beginning
        self.max_read = max_read
        self.max_line = max_line
        self.max_lines = max_lines
        self.files: dict[str, _FileState] = {}
        self.saved: dict[str, dict[str, int]] = {}
        self.first_scan = True
        if state_file and os.path.exists(state_file):
            try:
                self.saved = json.loads(Path(state_file).read_text())
            except (OSError, ValueError):
                self.saved = {}

    def _paths(self) -> list[str]:
        out: list[str] = []
        for p in self.patterns:
            out.extend(sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p])
        return out

    def _open(self, path: str, start: int | None) -> _FileState | None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open across runs to finish rotated files
        except OSError:
            return None
        st = os.fstat(fh.fileno())
        saved = self.saved.get(path)
        if start is None:
            if saved and saved.get("ino") == st.st_ino and saved.get("dev") == st.st_dev and saved.get("offset", 0) <= st.st_size:
                start = int(saved["offset"])
            elif saved or self.from_beginning or not self.first_scan:
                start = 0  # rotated while we were down, or a file that appeared after start-up
            else:
                start = st.st_size
        fh.seek(start)
        fs = _FileState(path, st.st_dev, st.st_ino, start, fh)
        fs.grouper = self.new_grouper()
        return fs

    def poll(self) -> Iterator[tuple[str, str]]:
        """(path, record text) for each finished record; idle pending records are finished too."""
        seen = set()
        for path in self._paths():
            seen.add(path)
            fs = self.files.get(path)
            if fs is None:
                fs = self._open(path, None)
                if fs is None:
                    continue
                self.files[path] = fs
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and (st.st_ino != fs.ino or st.st_dev != fs.dev):
                # rotated: finish the old file through its open handle, then start the new one at 0
                yield from self._finish(fs)
                fs.fh.close()
                nfs = self._open(path, 0)
                if nfs is None:
                    del self.files[path]
                    continue
                self.files[path] = fs = nfs
            elif st is not None and st.st_size < fs.offset + self._buffered(fs):
                # truncated in place (copytruncate): start again from the top
                fs.grouper = self.new_grouper()
                fs.fh.seek(0)
                fs.offset = 0
                fs.pending_offset = None
            yield from self._read(fs, final=False)
        for path in list(self.files):
            if path not in seen:
                fs = self.files.pop(path)
                yield from self._finish(fs)
                fs.fh.close()
        self.first_scan = False

    @staticmethod
    def _buffered(fs: _FileState) -> int:
        return fs.fh.tell() - fs.offset if fs.fh else 0

    def _finish(self, fs: _FileState) -> Iterator[tuple[str, str]]:
        """Read a rotated or removed file to its end (its last line may lack a newline), then flush."""
        while True:
            before = fs.fh.tell()
            yield from self._read(fs, final=False)
            if fs.fh.tell() == before:
                break
        yield from self._read(fs, final=True)

    def _read(self, fs: _FileState, *, final: bool) -> Iterator[tuple[str, str]]:
        fh = fs.fh
        pos = fh.tell()
        data = fh.read(self.max_read)
        end = data.rfind(b"\n") + 1
        chunk = data[:end]
        if final and end < len(data) < self.max_read:
            end = len(data)  # the file will not grow any more: its unterminated last line is complete
            chunk = data + b"\n"
        got = end > 0
        if got:
            fh.seek(pos + end)
            off = pos
            for raw in chunk.split(b"\n")[:-1]:
                line = raw[: self.max_line].decode("utf-8", "replace").rstrip("\r")
                if not fs.grouper.pending:
                    fs.pending_offset = off
                rec = fs.grouper.feed(line)
                if rec is not None:
                    yield fs.path, rec
                    fs.pending_offset = off
                off = min(off + len(raw) + 1, pos + end)
            # consumed up to the start of the pending record
            fs.offset = fs.pending_offset if fs.grouper.pending and fs.pending_offset is not None else off
        else:
            fh.seek(pos)
            if len(data) >= self.max_read:  # one enormous line: skip it
                fh.seek(pos + len(data))
        if final or (not got and not data and fs.grouper.pending):
            rec = fs.grouper.take()
            if rec is not None:
                yield fs.path, rec
            fs.offset = fh.tell()
            fs.pending_offset = None

    def save(self) -> None:
        state = {p: {"dev": fs.dev, "ino": fs.ino, "offset": fs.offset} for p, fs in self.files.items()}
        self.saved.update(state)
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.saved, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except OSError:
            pass

    def close(self) -> None:
        for fs in self.files.values():
            if fs.fh:
                fs.fh.close()
        self.files.clear()


# ---------------------------------------------------------------- check bases


@dataclass(frozen=True, kw_only=True)
class TailedFilesConfig(CheckConfig):
    """Options every file-tailing check takes."""

    #: files to follow (globs allowed, absolute paths)
    paths: list[str]
    #: read files from their start when first seen (default: only what is written after start-up)
    from_beginning: bool = False
    max_read_bytes: ByteSize = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.paths:
            raise ValueError("paths must list at least one file or glob")
        for i, p in enumerate(self.paths):
            if not os.path.isabs(p):
                raise ConfigError(f"paths[{i}]", f"must be an absolute path, got {p!r}")


class TailingCheck:
    """Mixin for checks over followed files (list it before Check): `_collect` runs in a thread,
    the tailer's offsets are saved on close."""

    tailer: Tailer

    @staticmethod
    def _tailer(config: Any, state_dir: str | None, **options: Any) -> Tailer:
        """A Tailer of `config.paths` with its offsets under `state_dir`."""
        return Tailer(
            list(config.paths), os.path.join(state_dir, "offsets.json") if state_dir else None,
            from_beginning=config.from_beginning, max_read=config.max_read_bytes, max_line=config.max_line_bytes,
            **options,
        )

    def _collect(self) -> list[Reading]:
        raise NotImplementedError

    async def run(self) -> list[Reading]:
        import asyncio

        return await asyncio.to_thread(self._collect)

    async def close(self) -> None:
        self.tailer.save()
        self.tailer.close()
