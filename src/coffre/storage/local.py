"""A ``BlobStore`` in a local directory tree, one file per key.

Never stores anything outside its root; holds only ciphertext given by
callers. Confinement does not rest on string checks alone: every path is
walked one segment at a time from a descriptor of the root with
``O_NOFOLLOW`` (``openat``-style), so a symlink planted inside the root is
refused with ``PermissionDenied`` instead of being followed, whichever
component it sits on and even if it appears between a check and a use.

Durability: ``put`` and ``put_stream`` write a ``.tmp-*`` file next to the
target, fsync it, rename it over the key and fsync the directory; new
directories are fsynced into their parents; an appender's ``commit``
fsyncs the file (and the directory once for a blob it (re)created).
Empty directories are pruned on ``delete``; writers retry if the directory
they are entering is pruned under them.

POSIX only: it needs ``O_NOFOLLOW``, ``O_DIRECTORY`` and ``dir_fd`` support.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from coffre.errors import (
    CoffreError,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StorageError,
    StorageFull,
)
from coffre.storage.direct_io import DirectWriter, open_direct
from coffre.storage.keys import TEMP_PREFIX, is_valid_segment, key_segments, prefix_directory

FILE_MODE = 0o600
DIR_MODE = 0o700

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | _CLOEXEC
# O_NONBLOCK so that a FIFO planted in the tree cannot hang an open; it has
# no effect on regular files and is cleared once the file is known regular.
_FILE_FLAGS = getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | _CLOEXEC
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
# Reading a directory or a FIFO where a blob should be: there is no blob there.
_NOT_A_BLOB_ERRNOS = _MISSING_ERRNOS | {errno.EISDIR}
_CREATE_RETRIES = 3
_READ_PIECE = 8 << 20

_T = TypeVar("_T")
# Descriptors of the root and of each directory below it (``list`` is a method name here).
_DirChain = list[int]


class LocalBlobStore:
    """Blobs as files under ``root`` (created 0700 if missing)."""

    def __init__(self, root: Path) -> None:
        _require_posix()
        if not root.is_absolute():
            raise ConfigurationError("local blob store root must be an absolute path")
        try:
            root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            self._root = root.resolve(strict=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot use local blob store root: {os.strerror(exc.errno or 0)}"
            ) from exc
        if not self._root.is_dir():
            raise ConfigurationError("local blob store root is not a directory")

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self._root)!r})"

    # -- whole-blob writes -------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        segments = key_segments(key)
        name = segments[-1]
        with _os_errors(key, writing=True):
            dir_fd, temp, fd = self._create_temp(segments)
        size = 0
        try:
            for chunk in chunks:  # the caller's own exceptions pass through untranslated
                with _os_errors(key, writing=True):
                    _write_all(fd, chunk)
                size += len(chunk)
            with _os_errors(key, writing=True):
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                temp = ""
                os.fsync(dir_fd)
            return size
        finally:
            if fd >= 0:
                os.close(fd)
            if temp:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
            os.close(dir_fd)

    def _create_temp(self, segments: Sequence[str]) -> tuple[int, str, int]:
        """Open the key's directory and a fresh temp file in it: (dir fd, temp name, fd)."""

        def attempt() -> tuple[int, str, int]:
            dir_fd = self._open_parent(segments, create=True)
            try:
                _refuse_symlink(dir_fd, segments[-1])
                temp = TEMP_PREFIX + secrets.token_hex(8)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS
                fd = os.open(temp, flags, FILE_MODE, dir_fd=dir_fd)
            except BaseException:
                os.close(dir_fd)
                raise
            return dir_fd, temp, fd

        return _retry_if_pruned(attempt)

    # -- appends -----------------------------------------------------------

    def open_append(self, key: str, offset: int) -> LocalAppender:
        segments = key_segments(key)
        _check_offset(offset)
        with _os_errors(key, writing=True):
            if offset == 0:
                dir_fd, fd = self._open_restart(segments)
            else:
                dir_fd, fd = self._open_existing(key, segments, offset)
        return LocalAppender(key, fd, dir_fd, position=offset, sync_dir=offset == 0)

    def _open_restart(self, segments: Sequence[str]) -> tuple[int, int]:
        """Create or truncate the blob; return (dir fd, file fd)."""

        def attempt() -> tuple[int, int]:
            dir_fd = self._open_parent(segments, create=True)
            try:
                fd = _open_file(dir_fd, segments[-1], os.O_WRONLY | os.O_CREAT | _FILE_FLAGS)
            except BaseException:
                os.close(dir_fd)
                raise
            try:
                os.ftruncate(fd, 0)
            except BaseException:
                os.close(fd)
                os.close(dir_fd)
                raise
            return dir_fd, fd

        return _retry_if_pruned(attempt)

    def _open_existing(self, key: str, segments: Sequence[str], offset: int) -> tuple[int, int]:
        """Open the blob, check ``offset`` against its size, cut what lies past it."""
        try:
            dir_fd = self._open_parent(segments, create=False)
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                raise NotFound("no blob under this key", key=key) from exc
            raise
        try:
            fd = _open_file(dir_fd, segments[-1], os.O_WRONLY | _FILE_FLAGS)
        except FileNotFoundError as exc:
            os.close(dir_fd)
            raise NotFound("no blob under this key", key=key) from exc
        except BaseException:
            os.close(dir_fd)
            raise
        try:
            size = os.fstat(fd).st_size
            if size < offset:
                raise Conflict(
                    "append offset is past the blob's size: committed data was lost",
                    key=key,
                    offset=offset,
                    size=size,
                )
            if size > offset:
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            os.close(dir_fd)
            raise
        return dir_fd, fd

    # -- reads -------------------------------------------------------------

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        segments = key_segments(key)
        _check_offset(offset)
        if length is not None and length < 0:
            raise InvalidInput("read length must not be negative")
        with _os_errors(key, writing=False):
            dir_fd = self._open_parent(segments, create=False)
            try:
                fd = _open_file(dir_fd, segments[-1], os.O_RDONLY | _FILE_FLAGS)
            finally:
                os.close(dir_fd)
            try:
                size = os.fstat(fd).st_size
                end = size if length is None else min(size, offset + length)
                return _pread_all(fd, offset, end)
            finally:
                os.close(fd)

    def size(self, key: str) -> int:
        segments = key_segments(key)
        with _os_errors(key, writing=False):
            info = self._lstat(segments)
            if not stat.S_ISREG(info.st_mode):
                raise NotFound("no blob under this key", key=key)
            return info.st_size

    def exists(self, key: str) -> bool:
        segments = key_segments(key)
        try:
            with _os_errors(key, writing=False):
                return stat.S_ISREG(self._lstat(segments).st_mode)
        except NotFound:
            return False

    def _lstat(self, segments: Sequence[str]) -> os.stat_result:
        dir_fd = self._open_parent(segments, create=False)
        try:
            info = os.stat(segments[-1], dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(dir_fd)
        if stat.S_ISLNK(info.st_mode):
            raise _symlink_refused()
        return info

    # -- delete and list ---------------------------------------------------

    def delete(self, key: str) -> None:
        segments = key_segments(key)
        with _os_errors(key, writing=True):
            try:
                dir_fds = self._open_chain(segments[:-1])
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    return
                raise
            try:
                try:
                    info = os.stat(segments[-1], dir_fd=dir_fds[-1], follow_symlinks=False)
                except OSError as exc:
                    if exc.errno in _MISSING_ERRNOS:
                        return
                    raise
                if stat.S_ISLNK(info.st_mode):
                    raise _symlink_refused()
                if not stat.S_ISREG(info.st_mode):
                    return  # a directory of other keys: no blob under this key
                try:
                    os.unlink(segments[-1], dir_fd=dir_fds[-1])
                except FileNotFoundError:
                    return  # a concurrent delete won
                os.fsync(dir_fds[-1])
                _prune_empty(dir_fds, segments[:-1])
            finally:
                for fd in dir_fds:
                    os.close(fd)

    def list(self, prefix: str = "") -> Iterator[str]:
        directory = prefix_directory(prefix)  # validated now, not at the first next()
        return self._list(directory, prefix)

    def _list(self, directory: Sequence[str], prefix: str) -> Iterator[str]:
        with _os_errors(prefix, writing=False):
            try:
                dir_fds = self._open_chain(directory)
            except PermissionDenied:
                return  # a symlink: skipped, as anywhere else in a listing
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    return
                raise
            for fd in dir_fds[:-1]:
                os.close(fd)
            yield from _walk(dir_fds[-1], directory, prefix)

    def list_dated(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """``list`` with each file's modification time (``Dated``)."""
        return self._list_dated(self.list(prefix))  # the prefix is validated now

    def _list_dated(self, keys: Iterator[str]) -> Iterator[tuple[str, datetime]]:
        for key in keys:
            try:
                with _os_errors(key, writing=False):
                    info = self._lstat(key_segments(key))
            except NotFound:
                continue  # removed since the listing
            yield key, datetime.fromtimestamp(info.st_mtime, UTC)

    # -- confined path walking --------------------------------------------

    def _open_parent(self, segments: Sequence[str], *, create: bool) -> int:
        """Descriptor of the directory holding the key's last segment."""
        dir_fds = self._open_chain(segments[:-1], create=create)
        for fd in dir_fds[:-1]:
            os.close(fd)
        return dir_fds[-1]

    def _open_chain(self, directories: Sequence[str], *, create: bool = False) -> _DirChain:
        """Descriptors of the root and of each directory below it, never following a link."""
        dir_fds = [os.open(self._root, _DIR_FLAGS)]
        try:
            for name in directories:
                if create:
                    _make_dir(dir_fds[-1], name)
                dir_fds.append(_open_dir(dir_fds[-1], name))
        except BaseException:
            for fd in dir_fds:
                os.close(fd)
            raise
        return dir_fds


class LocalAppender:
    """Writes straight to the blob's file; ``commit`` is an fsync.

    After a failed write or fsync the position (or what the kernel kept) is
    unknown, so the appender refuses further use: reopen at the last offset
    that ``commit`` returned.
    """

    def __init__(self, key: str, fd: int, dir_fd: int, *, position: int, sync_dir: bool) -> None:
        self._key = key
        self._fd = fd
        self._dir_fd = dir_fd
        self._position = position
        self._sync_dir = sync_dir
        self._failed = False
        direct_fd = open_direct(fd, position)
        self._direct = DirectWriter(fd, direct_fd, position) if direct_fd >= 0 else None

    def write(self, data: bytes) -> None:
        self._check_usable()
        self._failed = True
        with _os_errors(self._key, writing=True):
            if self._direct is not None:
                self._direct.write(data)
            else:
                _write_all(self._fd, data)
        self._position += len(data)
        self._failed = False

    def commit(self) -> int:
        self._check_usable()
        self._failed = True
        with _os_errors(self._key, writing=True):
            if self._direct is not None:
                self._direct.settle()
            os.fsync(self._fd)
            if self._sync_dir:
                os.fsync(self._dir_fd)
                self._sync_dir = False
        self._failed = False
        return self._position

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        for fd in (self._fd, self._dir_fd):
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
        self._fd = self._dir_fd = -1

    def _check_usable(self) -> None:
        if self._fd < 0:
            raise ValueError("appender is closed")
        if self._failed:
            raise StorageError(
                "an earlier write or commit failed; reopen at the last committed offset",
                key=self._key,
            )


# -- helpers: one system call each, with the symlink and error policy -------


def _require_posix() -> None:
    needed = (os.open, os.mkdir, os.stat, os.unlink, os.rmdir, os.rename)
    if (
        not hasattr(os, "O_NOFOLLOW")
        or not hasattr(os, "O_DIRECTORY")
        or not all(function in os.supports_dir_fd for function in needed)
        or os.scandir not in os.supports_fd
    ):
        raise ConfigurationError("the local blob store needs a POSIX system (openat, O_NOFOLLOW)")


def _retry_if_pruned(attempt: Callable[[], _T]) -> _T:
    """Run ``attempt`` again if a concurrent ``delete`` pruned a directory it entered."""
    for remaining in range(_CREATE_RETRIES - 1, -1, -1):
        try:
            return attempt()
        except FileNotFoundError:
            if not remaining:
                raise
    raise AssertionError("unreachable")


def _check_offset(offset: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer")


def _symlink_refused() -> PermissionDenied:
    return PermissionDenied("the blob store refuses to follow a symbolic link")


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refuse_symlink(dir_fd: int, name: str) -> None:
    if _is_symlink(dir_fd, name):
        raise _symlink_refused()


def _open_dir(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and _is_symlink(dir_fd, name):
            raise _symlink_refused() from exc
        raise


def _make_dir(dir_fd: int, name: str) -> None:
    try:
        os.mkdir(name, DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return
    os.fsync(dir_fd)  # make the new entry durable before anything is stored below it


def _open_file(dir_fd: int, name: str, flags: int) -> int:
    """Open a regular file without following a link or blocking on a FIFO."""
    try:
        fd = os.open(name, flags, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and _is_symlink(dir_fd, name):
            raise _symlink_refused() from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise IsADirectoryError(errno.EISDIR, "not a regular file") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pread_all(fd: int, offset: int, end: int) -> bytes:
    pieces: list[bytes] = []
    while offset < end:
        piece = os.pread(fd, min(end - offset, _READ_PIECE), offset)
        if not piece:
            break
        pieces.append(piece)
        offset += len(piece)
    return b"".join(pieces)


def _prune_empty(dir_fds: Sequence[int], directories: Sequence[str]) -> None:
    """Remove now-empty directories bottom-up, never the root."""
    for depth in range(len(directories), 0, -1):
        try:
            os.rmdir(directories[depth - 1], dir_fd=dir_fds[depth - 1])
        except OSError:
            return  # not empty (or already gone): stop here
        os.fsync(dir_fds[depth - 1])


def _walk(dir_fd: int, directory: Sequence[str], prefix: str) -> Iterator[str]:
    """Keys under ``dir_fd`` starting with ``prefix``; closes ``dir_fd``."""
    try:
        with os.scandir(dir_fd) as entries:
            found = [
                (entry.name, entry.is_dir(follow_symlinks=False))
                for entry in entries
                if is_valid_segment(entry.name)
                and (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False))
            ]
        for name, is_dir in found:
            key = "/".join([*directory, name])
            if not key.startswith(prefix):
                continue
            if not is_dir:
                yield key
                continue
            try:
                child = _open_dir(dir_fd, name)
            except PermissionDenied:
                continue  # swapped for a link since the scan
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    continue  # removed since the scan
                raise
            yield from _walk(child, [*directory, name], prefix)
    finally:
        os.close(dir_fd)


@contextmanager
def _os_errors(key: str, *, writing: bool) -> Iterator[None]:
    """Translate ``OSError`` into the error tree; ``CoffreError`` passes through."""
    try:
        yield
    except CoffreError:
        raise
    except OSError as exc:
        raise _translate(exc, key, writing=writing) from exc


def _translate(exc: OSError, key: str, *, writing: bool) -> CoffreError:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    # Messages carry the errno, never a filesystem path.
    if code in _FULL_ERRNOS:
        return StorageFull("the local blob store is full", key=key, errno=name)
    if code in _NOT_A_BLOB_ERRNOS and not writing:
        return NotFound("no blob under this key", key=key)
    if code in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST) and writing:
        return Conflict(
            "a key cannot be both a blob and a prefix of other keys in the local store",
            key=key,
        )
    return StorageError(f"local blob store failed: {os.strerror(code)}", key=key, errno=name)
