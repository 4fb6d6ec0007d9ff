# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers that hold on NFS and in a directory others can write to.

Atomic JSON replacement, per-resource locks (exclusive for writers, shared for
readers), exclusive creation of new files, and the test whether another
process holds a file. Nothing here follows a symbolic link or opens anything
but a regular file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import struct
import tempfile
import time
import hashlib
from contextlib import ExitStack, contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._errors import StorageError

_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK
_MAX_JSON = 16 << 20


def os_error(exc, action, path):
    """The one-sentence ``StorageError`` for an ``OSError`` raised while doing ``action`` on ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = 'it is a symbolic link'
    return StorageError('%s %s failed: %s.' % (action, os.path.basename(path) or path, reason),
                        errno=exc.errno)


def open_regular(path, flags=os.O_RDONLY, what='File'):
    """Open ``path`` without following a link or blocking; refuse anything but a regular file.

    Returns the descriptor, or None when ``path`` does not exist.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW, 0o644)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise StorageError('%s %s is not a regular file.' % (what, os.path.basename(path)))
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError('%s %s is not a regular file.' % (what, os.path.basename(path)))
    return fd


def read_json(path, what, error=StorageError):
    """Return the JSON value in ``path``, None when absent; raise ``error`` on anything else.

    Only a regular file is read (a FIFO or a device would block or never end).
    """
    name = os.path.basename(path)
    try:
        fd = open_regular(path, what=what)
        if fd is None:
            return None
        with os.fdopen(fd, 'rb') as handle:
            data = handle.read(_MAX_JSON + 1)
    except StorageError as exc:
        raise error(exc.message)
    except OSError as exc:
        raise error(os_error(exc, 'Reading %s' % what.lower(), path).message)
    if len(data) > _MAX_JSON:
        raise error('%s %s is larger than %d bytes.' % (what, name, _MAX_JSON))
    try:
        return json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise error('%s %s is not valid JSON: %s.' % (what, name, exc))


def write_json_atomic(path, data, attrs=(0o644, None, None)):
    """Replace ``path`` with ``data`` as JSON: temp file, fsync, rename, fsync dir.

    A reader sees either the old or the new content, never a partial file. The
    file gets ``attrs`` (mode, uid, gid). An ``OSError`` becomes a
    ``StorageError``, and the temporary file is removed.
    """
    directory = os.path.dirname(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            apply_attrs(handle.fileno(), attrs)
            os.fsync(handle.fileno())
        os.rename(tmp, path)
        tmp = None
        fsync_dir(directory)
    except OSError as exc:
        raise os_error(exc, 'Writing', path)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network file systems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS):
            raise
    finally:
        os.close(fd)


def apply_attrs(fd, attrs):
    """Give the file open as ``fd`` the ``attrs`` ``(mode, uid, gid)`` (None: leave it).

    The owner is set only by root and only where it differs; the umask never
    applies, since the mode is set on the descriptor.
    """
    if attrs is None:
        return
    mode, uid, gid = attrs
    info = os.fstat(fd)
    if os.geteuid() == 0 and uid is not None and (info.st_uid, info.st_gid) != (uid, gid):
        try:
            os.fchown(fd, uid, gid)
        except PermissionError:
            pass  # root squashed by the NFS server: the file keeps the owner the server gives it
    if mode is not None and stat.S_IMODE(info.st_mode) != mode:
        os.fchmod(fd, mode)


def create_new(path, attrs=None):
    """Create ``path`` as a new empty regular file (never through a link) with ``attrs``; return its descriptor.

    The caller hands the descriptor to the command that fills the file
    (``/dev/fd/N``), so no rename or link planted at ``path`` later can redirect
    the write. On failure nothing is left behind.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except FileExistsError:
        raise StorageError('File %s already exists; it was not made by this run, so it is left alone.'
                           % os.path.basename(path))
    except OSError as exc:
        raise os_error(exc, 'Creating', path)
    try:
        apply_attrs(fd, attrs or (0o644, None, None))
    except OSError as exc:
        inode = os.fstat(fd).st_ino
        os.close(fd)
        if same_file(path, inode):
            os.unlink(path)
        raise os_error(exc, 'Setting the mode of', path)
    return fd


@contextmanager
def pinned(files, what='Image file'):
    """Open each ``(path, identity)`` read-only and yield ``{path: descriptor}``; close them after.

    ``identity`` is the ``(st_dev, st_ino)`` the file had when it was read and
    validated (None: any). A file that is a link, not a regular file, hard-linked,
    or another file than the one validated is refused. A command given
    ``/dev/fd/N`` then works on exactly the validated file, whatever is renamed
    over its name meanwhile.
    """
    opened = {}
    try:
        for path, identity in files:
            if path in opened:
                continue
            fd = open_regular(path, what=what)
            if fd is None:
                raise StorageError('%s %s disappeared; nothing was written.' % (what, os.path.basename(path)))
            opened[path] = fd
            info = os.fstat(fd)
            if info.st_nlink != 1 or (identity is not None and (info.st_dev, info.st_ino) != tuple(identity)):
                raise StorageError('%s %s changed since it was read; nothing was written.'
                                   % (what, os.path.basename(path)))
        yield opened
    finally:
        for fd in opened.values():
            os.close(fd)


def fd_path(fd):
    """The name a command opens descriptor ``fd`` by."""
    return '/dev/fd/%d' % fd


def same_file(path, inode):
    """True when ``path`` is still the regular file ``inode`` (not replaced by anything else)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_ino == inode


#: QEMU's image locks: byte 100 + n is held (shared) by a process that has permission bit
#: n; bits 1 to 3 are write, write-unchanged and resize, what a writer of the image holds
QEMU_WRITE_BYTES = (101, 3)


def holder(path, writers_only=False):
    """The process id holding a POSIX or OFD lock on ``path`` (-1 when unknown), or None.

    QEMU locks every image it opens (bytes 100 and up), read-only backing files
    too, so any lock held by another process means the image is in use. With
    ``writers_only``, only the bytes that mean "may write this image" count:
    reading an image that others only read is safe. The test places no lock.
    A path that is not a regular file is never opened.
    """
    fd = open_regular(path, what='Image file')
    if fd is None:
        return None
    start, length = QEMU_WRITE_BYTES if writers_only else (0, 0)
    try:
        query = struct.pack('hhqqi', fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query + b'\0' * (64 - len(query)))
        lock_type, _whence, _start, _length, pid = struct.unpack_from('hhqqi', answer)
    finally:
        os.close(fd)
    return None if lock_type == fcntl.F_UNLCK else pid


def _lock_fd(path, flags, operation, timeout, what):
    """Open ``path`` (created only with ``os.O_CREAT`` in ``flags``) and lock it; None when absent."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = open_regular(path, flags, what='Lock file')
        except OSError as exc:
            raise os_error(exc, 'Opening lock file', path)
        if fd is None:
            return None
        try:
            while True:
                try:
                    fcntl.lockf(fd, operation | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise os_error(exc, 'Locking', path)
                    if time.monotonic() >= deadline:
                        raise StorageError('Timed out after %ss waiting for the lock on %s.' % (timeout, what))
                    time.sleep(0.05)
            same = same_file(path, os.fstat(fd).st_ino)
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)


@contextmanager
def file_lock(path, timeout, what, shared=False, attrs=None):
    """Hold a POSIX record lock on ``path`` for the ``with`` body; yield its descriptor (None: no lock file).

    POSIX (``fcntl``) locks are the lock type that NFSv3 (NLM) and NFSv4 both
    carry to the server, so two hosts sharing the export exclude each other.
    A writer takes an exclusive lock and creates the lock file; a reader
    (``shared``) takes a shared lock only when the lock file exists, and never
    creates it. The lock file may be removed by the holder (when its resource
    is deleted), so after locking, the path must still name the locked inode;
    otherwise the lock is taken again on the new file.
    """
    if shared:
        fd = _lock_fd(path, os.O_RDONLY, fcntl.LOCK_SH, timeout, what)
    else:
        if attrs is not None:
            try:
                os.close(create_new(path, attrs))  # only a lock file this run makes gets ``attrs``
            except StorageError:
                if not os.path.lexists(path):
                    raise
        fd = _lock_fd(path, os.O_RDWR | os.O_CREAT, fcntl.LOCK_EX, timeout, what)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def revalidate_directory(path):
    """Make the next lookups in ``path`` ask the server for names another NFS client changed.

    An NFS client caches lookups, also of names that did not exist; a lock revalidates
    only the locked file. Opening the directory makes the client check the directory
    with the server and drop what changed, so a file another host created or renamed
    into place since is seen. On a local file system this costs one open.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise os_error(exc, 'Opening volume directory', path)
    os.close(fd)


#: where host-local locks live (a tmpfs, emptied at boot): for root a directory in /run,
#: which only root can write, so no other user can make it first
HOST_LOCK_DIR = '/run/stratum-storage' if os.geteuid() == 0 else '/run/lock/stratum-storage-%d' % os.geteuid()


def _host_lock_dir(base):
    """``base``, made by this user with mode 0700; refused when it is a link, not ours or writable by others."""
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise os_error(exc, 'Making lock directory', base)
    try:
        info = os.lstat(base)
    except OSError as exc:
        raise os_error(exc, 'Reading lock directory', base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise StorageError('Lock directory %s is not a directory of this user that only it can write; '
                           'remove it so that it is made again.' % base)
    return base


def _host_lock_path(directory, scope, name):
    key = '%s\0%s' % (scope, name)
    return os.path.join(directory, hashlib.sha256(key.encode('utf-8')).hexdigest()[:32] + '.lock')


def _read_turns(fd):
    """The mark a host lock file holds: its first ``TURN_WIDTH`` bytes ('' for a new or emptied file)."""
    return os.pread(fd, TURN_WIDTH, 0).decode('ascii', 'replace')


def _write_turns(fd):
    """Write a fresh random mark over the old one (same width, never truncated first)."""
    os.pwrite(fd, os.urandom(TURN_WIDTH // 2).hex().encode('ascii'), 0)


#: bytes of the random mark a host lock file holds
TURN_WIDTH = 32
#: host lock files this process holds now (reading their marks would drop its POSIX lock)
_HELD = set()


class HeldLocks(ExitStack):
    """Held locks that a ``with`` statement releases; it gets ``turns``, the marks the locks held when taken."""

    turns = None

    def __enter__(self):
        super().__enter__()
        return self.turns


def host_locks(scope, names, timeout=600, base=None):
    """Exclusive host-local locks on ``names`` within ``scope`` (a volume group, a parent dataset).

    For storage that only this host changes (LVM, ZFS): every run on the host that
    changes a volume takes the volume's lock, so of simultaneous runs of one change
    one makes it and the others then find it made. Locks are taken in name order,
    so two runs that need the same two volumes cannot deadlock. Returns a
    ``HeldLocks`` that releases them.

    Each lock file holds a random mark that a run replaces when it takes the lock and
    again when it lets it go (also when the run fails; a run killed while holding it has
    still replaced it on taking). ``turns`` of the returned stack holds the marks found
    on taking the locks, before this run's own; equal to what ``host_lock_turns`` read
    before a run's first read, they mean no run on this host held these locks in
    between. A mark is written over the old one at the same width, so no failure leaves
    an earlier value behind.
    """
    directory = _host_lock_dir(base or HOST_LOCK_DIR)
    stack = HeldLocks()
    turns = []
    try:
        for name in sorted(set(names)):
            path = _host_lock_path(directory, scope, name)
            fd = stack.enter_context(file_lock(path, timeout, 'volume %s of %s' % (name, scope)))
            _HELD.add(path)
            stack.callback(_HELD.discard, path)
            turns.append(_read_turns(fd))
            try:
                _write_turns(fd)
            except OSError as exc:
                raise os_error(exc, 'Writing lock file', path)
            stack.callback(_release_turn, fd)
    except BaseException:
        stack.close()
        raise
    stack.turns = tuple(turns)
    return stack


def _release_turn(fd):
    try:
        _write_turns(fd)
    except OSError:
        pass  # the mark written on taking differs from any read before it


def host_lock_turns(scope, names, base=None):
    """The marks of the host locks on ``names``, read without taking them or making anything.

    A lock file that does not exist reads as ''. None when a run holds one of them now
    (what the storage shows may be half its change), when this process holds one (its
    POSIX lock would be dropped by reading), or when the lock directory or a lock file
    is not as ``host_locks`` makes it: the caller then reads again under the lock.
    """
    directory = base or HOST_LOCK_DIR
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return tuple('' for _name in set(names))
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        return None
    turns = []
    for name in sorted(set(names)):
        path = _host_lock_path(directory, scope, name)
        if path in _HELD:
            return None
        try:
            fd = open_regular(path, what='Lock file')
        except (OSError, StorageError):
            return None
        if fd is None:
            turns.append('')
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            turns.append(_read_turns(fd))
        except OSError:
            return None  # held by a run now
        finally:
            os.close(fd)
    return tuple(turns)
