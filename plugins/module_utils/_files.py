# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers that hold on NFS: atomic JSON replacement and per-resource locks."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._errors import StorageError


def read_json(path, what, error=StorageError):
    """Return the JSON object in ``path``, None when absent; raise ``error`` on garbage."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error('%s %s is not valid JSON: %s.' % (what, os.path.basename(path), exc))


def write_json_atomic(path, data, mode=0o644):
    """Replace ``path`` with ``data`` as JSON: temp file, fsync, rename, fsync dir.

    A reader sees either the old or the new content, never a partial file. The
    existing file's permission bits are kept.
    """
    directory = os.path.dirname(path)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network file systems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS):
            raise
    finally:
        os.close(fd)


@contextmanager
def file_lock(path, timeout, what):
    """Hold an exclusive POSIX record lock on ``path`` for the ``with`` body.

    POSIX (``fcntl``) locks are the lock type that NFSv3 (NLM) and NFSv4 both
    carry to the server, so two hosts sharing the export exclude each other.
    The lock file may be removed by the holder (when its resource is deleted),
    so after locking, the path must still name the locked inode; otherwise the
    lock is taken again on the new file.
    """
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise StorageError('Timed out after %ss waiting for the lock on %s.' % (timeout, what))
                    time.sleep(0.05)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)
