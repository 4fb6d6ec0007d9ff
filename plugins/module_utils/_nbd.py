# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and write the guest view of an image at chosen offsets, through ``qemu-nbd``.

``qemu-img`` copies whole images; a backup writes only the clusters that
changed. So the image is served by ``qemu-nbd`` on a UNIX socket in a private
directory, with every layer given by ``--image-opts`` (opened from the
descriptors the caller validated), and this client sends reads, writes and
zero writes to it. qemu-nbd serves one client and exits when it disconnects.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from ansible_collections.stratum.storage.plugins.module_utils._errors import StorageError
from ansible_collections.stratum.storage.plugins.module_utils._runner import C_LOCALE

_OLD_MAGIC = b'NBDMAGIC'
_OPT_MAGIC = 0x49484156454F5054  # IHAVEOPT
_FLAG_FIXED_NEWSTYLE = 1
_FLAG_NO_ZEROES = 2
_OPT_EXPORT_NAME = 1
_REQUEST_MAGIC = 0x25609513
_REPLY_MAGIC = 0x67446698
_CMD_READ, _CMD_WRITE, _CMD_DISC, _CMD_FLUSH, _CMD_WRITE_ZEROES = 0, 1, 2, 3, 6
_FLAG_HAS_FLAGS, _FLAG_READ_ONLY, _FLAG_SEND_WRITE_ZEROES = 1, 2, 1 << 6
#: the largest request sent: qemu-nbd accepts 32 MiB
MAX_REQUEST = 4 << 20
START_TIMEOUT = 60
#: a UNIX socket's path holds at most 107 bytes
MAX_SOCKET_PATH = 100


class NbdExport:
    """``with NbdExport(runner, opts, fds, writable) as image:`` serves ``opts`` and connects to it.

    ``image.read``, ``image.write`` and ``image.write_zeroes`` work on guest
    offsets; ``bytes_read`` and ``bytes_written`` count what went over the
    socket. Leaving the block flushes (when writable), disconnects and waits
    for qemu-nbd to exit; an error there is one sentence.
    """

    def __init__(self, runner, opts, fds, writable=False, what='image'):
        self.runner = runner
        self.opts = opts
        self.fds = list(fds)
        self.writable = writable
        self.what = what
        self.size = None
        self.bytes_read = 0
        self.bytes_written = 0
        self.bytes_zeroed = 0
        self._process = None
        self._socket = None
        self._directory = None
        self._handle = 0

    # -- life cycle ---------------------------------------------------------------------

    def __enter__(self):
        self._directory = tempfile.mkdtemp(prefix='stratum-nbd-')
        path = os.path.join(self._directory, 'socket')
        if len(path) > MAX_SOCKET_PATH:  # a long TMPDIR: qemu-nbd cannot bind the socket and waits forever
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = tempfile.mkdtemp(prefix='stratum-nbd-', dir='/tmp')
            path = os.path.join(self._directory, 'socket')
        argv = [self.runner.binary('qemu-nbd'), '--image-opts', '--socket', path, '--cache=writeback',
                '--discard=ignore', '--shared=1']
        if not self.writable:
            argv.append('--read-only')
        argv.append(self.opts)
        env = dict(os.environ, **C_LOCALE)
        try:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, pass_fds=self.fds, env=env, close_fds=True,
                                             preexec_fn=_die_with_parent)
            self._connect(path)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None and self.writable:
                self._request(_CMD_FLUSH, 0, 0)
        finally:
            self._stop(clean=kind is None)
        return False

    def _connect(self, path):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise self._failed('exited before it served the %s' % self.what)
            if os.path.exists(path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(path)
                    break
                except OSError:
                    sock.close()
            if time.monotonic() > deadline:
                raise self._failed('did not open its socket within %d seconds' % START_TIMEOUT)
            time.sleep(0.02)
        self._socket = sock
        head = self._receive(18)
        if head[:8] != _OLD_MAGIC or struct.unpack('>Q', head[8:16])[0] != _OPT_MAGIC:
            raise StorageError('qemu-nbd answered with an unknown handshake.')
        server_flags = struct.unpack('>H', head[16:18])[0]
        flags = _FLAG_FIXED_NEWSTYLE | (server_flags & _FLAG_NO_ZEROES)
        self._socket.sendall(struct.pack('>I', flags) + struct.pack('>QII', _OPT_MAGIC, _OPT_EXPORT_NAME, 0))
        self.size, transmission = struct.unpack('>QH', self._receive(10))
        if not server_flags & _FLAG_NO_ZEROES:
            self._receive(124)
        if self.writable and transmission & _FLAG_READ_ONLY:
            raise StorageError('qemu-nbd serves the %s read-only.' % self.what)
        self._zeroes = bool(transmission & _FLAG_HAS_FLAGS and transmission & _FLAG_SEND_WRITE_ZEROES)

    def _stop(self, clean=False):
        if self._socket is not None:
            try:
                if clean:
                    self._socket.sendall(struct.pack('>IHHQQI', _REQUEST_MAGIC, 0, _CMD_DISC, 0, 0, 0))
            except OSError:
                pass
            self._socket.close()
            self._socket = None
        process, self._process = self._process, None
        if process is not None:
            try:
                rc = process.wait(timeout=60 if clean else 5)
            except subprocess.TimeoutExpired:
                process.kill()
                rc = process.wait()
            err = process.stderr.read().decode('utf-8', 'replace') if process.stderr else ''
            if process.stderr:
                process.stderr.close()
            if clean and rc != 0:
                raise StorageError('qemu-nbd serving the %s failed: %s (rc=%d).'
                                   % (self.what, _last_line(err), rc))
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _failed(self, what):
        rc = self._process.poll()
        err = ''
        if rc is not None and self._process.stderr:
            err = self._process.stderr.read().decode('utf-8', 'replace')
        return StorageError('qemu-nbd %s: %s.' % (what, _last_line(err) if err else 'no output'))

    # -- requests -------------------------------------------------------------------------

    def _receive(self, length):
        chunks, left = [], length
        while left:
            try:
                chunk = self._socket.recv(min(left, 1 << 20))
            except OSError as exc:
                raise StorageError('The connection to qemu-nbd serving the %s failed: %s.'
                                   % (self.what, exc.strerror or exc))
            if not chunk:
                raise StorageError('qemu-nbd closed the connection to the %s.' % self.what)
            chunks.append(chunk)
            left -= len(chunk)
        return b''.join(chunks)

    def _request(self, command, offset, length, payload=b''):
        self._handle += 1
        try:
            self._socket.sendall(struct.pack('>IHHQQI', _REQUEST_MAGIC, 0, command, self._handle, offset, length)
                                 + payload)
        except OSError as exc:
            raise StorageError('The connection to qemu-nbd serving the %s failed: %s.'
                               % (self.what, exc.strerror or exc))
        magic, error, handle = struct.unpack('>IIQ', self._receive(16))
        if magic != _REPLY_MAGIC or handle != self._handle:
            raise StorageError('qemu-nbd sent an unexpected reply for the %s.' % self.what)
        if error:
            raise StorageError('qemu-nbd could not %s %d bytes at offset %d of the %s: %s.'
                               % ({_CMD_READ: 'read', _CMD_FLUSH: 'flush'}.get(command, 'write'), length, offset,
                                  self.what, os.strerror(error)))
        return self._receive(length) if command == _CMD_READ else b''

    def read(self, offset, length):
        parts = []
        while length:
            step = min(length, MAX_REQUEST)
            parts.append(self._request(_CMD_READ, offset, step))
            offset, length = offset + step, length - step
        data = b''.join(parts)
        self.bytes_read += len(data)
        return data

    def write(self, offset, data):
        view = memoryview(data)
        while view:
            step = view[:MAX_REQUEST]
            self._request(_CMD_WRITE, offset, len(step), bytes(step))
            self.bytes_written += len(step)
            offset, view = offset + len(step), view[len(step):]

    def write_zeroes(self, offset, length):
        """Make ``length`` bytes read as zeros; qcow2 records them without writing data."""
        if not self._zeroes:
            self.write(offset, bytes(length))
            return
        while length:
            step = min(length, 1 << 30)
            self._request(_CMD_WRITE_ZEROES, offset, step)
            self.bytes_zeroed += step
            offset, length = offset + step, length - step


def _die_with_parent():
    """In the child: get SIGTERM when the module's process dies, so no qemu-nbd outlives a killed run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _last_line(text):
    lines = [line for line in (text or '').strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else 'no output'
