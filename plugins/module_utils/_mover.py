# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data mover: copy what changed between two points of a volume, in 64 KiB clusters.

A source is a snapshot read through a ``Reader`` (a block device, or a qcow2
chain served by qemu-nbd). The destination already holds an earlier point A
of the same volume, or nothing. Two ways to find what to copy:

- a change set: the ranges that differ between A and the snapshot, as the
  backend reports them (qcow2 allocation maps, ``thin_delta``); only those
  ranges are read and written;
- a compare: every cluster of the snapshot is read and compared with the
  destination, and only clusters that differ are written. This is the slow
  path, for backends without a change set (thick LVM, ZFS) or without a
  common point.

A cluster that reads as zeros is written as a zero write, which qcow2 records
without data.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import select
import stat
import struct
import subprocess
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._errors import StorageError

CLUSTER = 64 << 10
#: bytes read per request on a sequential pass
BLOCK = 1 << 20
#: bytes copied at a time from a stream into a process
RELAY_CHUNK = 1 << 20
#: what a pipe that relay moves data through is made to hold (Linux's limit for a user unless raised): each
#: end then wakes once a MiB instead of once per 64 KiB, the default
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)  # Linux's values; fcntl names them from Python 3.10
_F_GETPIPE_SZ = getattr(fcntl, 'F_GETPIPE_SZ', 1032)
_ZERO_BLOCK = bytes(BLOCK)


class BlockReader:
    """Reads a snapshot that is a block device (an LV or a zvol snapshot's device node)."""

    def __init__(self, path, size, what):
        self.path = path
        self.size = size
        self.what = what
        self.bytes_read = 0
        self._fd = None

    #: how the device is opened, and what for (in messages)
    _flags, _purpose = os.O_RDONLY, 'reading'

    def __enter__(self):
        try:
            fd = os.open(self.path, self._flags | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError('%s cannot be opened for %s at %s: %s.'
                               % (self.what, self._purpose, self.path, exc.strerror or exc))
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError('%s at %s is not a block device.' % (self.what, self.path))
        self._fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self._fd)
        self._fd = None
        return False

    def read(self, offset, length):
        parts, done = [], 0
        while done < length:
            try:
                chunk = os.pread(self._fd, length - done, offset + done)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise StorageError('%s cannot be read at offset %d (I/O error); a COW snapshot that overflowed '
                                       'reads like this.' % (self.what, offset + done))
                raise StorageError('%s cannot be read at offset %d: %s.' % (self.what, offset + done, exc.strerror))
            if not chunk:
                raise StorageError('%s ended at %d bytes, before its size of %d bytes.'
                                   % (self.what, offset + done, self.size))
            parts.append(chunk)
            done += len(chunk)
        self.bytes_read += length
        return b''.join(parts)


def aligned(ranges, size, unit=CLUSTER):
    """``ranges`` (offset, length) widened to whole ``unit``s, merged, sorted and cut at ``size``."""
    spans = []
    for offset, length in sorted(ranges):
        if length <= 0 or offset >= size:
            continue
        start = offset - offset % unit
        end = min(size, -(-(offset + length) // unit) * unit)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end - start) for start, end in spans]


def _pieces(ranges):
    """Split ranges into reads of at most ``BLOCK`` bytes, each starting on a cluster."""
    for offset, length in ranges:
        while length > 0:
            step = min(length, BLOCK)
            yield offset, step
            offset, length = offset + step, length - step


def copy_changes(reader, image, size, ranges=None, empty=False):
    """Make ``image`` (an open ``NbdExport``) read like ``reader`` over ``ranges`` (None: everywhere).

    Without ``ranges`` every cluster is compared with what ``image`` holds and
    only differing clusters are written (``empty``: ``image`` reads as zeros,
    so it is not read). With ``ranges`` (a change set) those clusters are
    written without comparing. Returns the number of clusters written.
    """
    compare = ranges is None
    spans = aligned([(0, size)] if ranges is None else ranges, size)
    written = 0
    for offset, length in _pieces(spans):
        data = reader.read(offset, length)
        old = None
        if compare:
            old = _ZERO_BLOCK[:length] if empty else image.read(offset, length)
        run_start, run = None, []
        for at in range(0, length, CLUSTER):
            piece = data[at:at + CLUSTER]
            if old is not None and old[at:at + CLUSTER] == piece:
                _flush(image, run_start, run)
                run_start, run = None, []
                continue
            written += 1
            if piece.count(0) == len(piece):
                _flush(image, run_start, run)
                run_start, run = None, []
                image.write_zeroes(offset + at, len(piece))
                continue
            if run_start is None:
                run_start = offset + at
            run.append(piece)
        _flush(image, run_start, run)
    return written


def _flush(image, offset, run):
    if run:
        image.write(offset, b''.join(run))


def digest(reader, size):
    """SHA-256 of the first ``size`` bytes that ``reader`` reads, as ``sha256:<hex>``."""
    hashed = hashlib.sha256()
    for offset, length in _pieces([(0, size)]):
        hashed.update(reader.read(offset, length))
    return 'sha256:' + hashed.hexdigest()


def restore_into_device(runner, image, path, what, size=None, zeroed=False):
    """Write backup ``image`` (a ``BackupImage``) onto the block device ``path``.

    ``zeroed``: the new device reads as zeros (a thin LV, a zvol), so zeros are
    not written and it stays thin. Otherwise zeros are written too, and with
    ``size`` larger than the backup (a device rounded up, or asked bigger) the
    rest of the device is zeroed, since a new device may hold old data.
    """
    target = 'driver=raw,file.driver=host_device,file.filename=%s' % path.replace(',', ',,')
    with image.opened() as (opts, fds):
        runner.run(['qemu-img', 'convert', '-q', '-n'] + (['--target-is-zero'] if zeroed else [])
                   + ['--image-opts', opts, '--target-image-opts', target],
                   pass_fds=fds, error='Restoring backup %s of volume %s into %s failed'
                   % (image.name, image.volume, what))
    if not zeroed and size is not None and size > image.size:
        runner.run(['blkdiscard', '--zeroout', '--offset', str(image.size), '--length', str(size - image.size), path],
                   error='Zeroing %s beyond the restored %d bytes failed' % (what, image.size))


@contextmanager
def streamed(runner, argv, what):
    """Yield the standard output of ``argv`` as a stream; raise when the command fails.

    When the ``with`` body raises, the command is killed and the body's error
    stands (a consumer that stops reading makes the command fail as well).
    """
    with tempfile.TemporaryFile() as errors:
        process = runner.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        try:
            yield process.stdout
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        if process.wait() != 0:
            errors.seek(0)
            lines = errors.read().decode('utf-8', 'replace').strip().splitlines()
            reason = lines[-1].rstrip('.') if lines else 'no output'
            raise StorageError('%s failed: %s (rc=%d).' % (what, reason, process.returncode))


# -- the block stream of a replica (LVM, nfs) ------------------------------------------------
#
# Over one connection (the SSH session of the receiver), after the request line:
#   source -> target  a JSON header line: {"size": N, "ranges": [[offset, length], ...] or null, "hashes": bool}
#   target -> source  with "hashes": b"H", the number of clusters (8 bytes, big-endian), and the SHA-256 of
#                     each 64 KiB cluster of the ranges as the destination holds them now
#   source -> target  records: offset (8 bytes), length (4), kind (1): 0 data (the bytes follow), 1 zeros,
#                     3 nothing (offset 0, length 0: the source is still comparing; sent to a target whose
#                     info answer has "keepalive", when nothing else was for KEEPALIVE_SECONDS, so that
#                     the target's limit on silence does not cut it);
#                     the end: offset 2**64-1, length 0, kind 2, and the SHA-256 of the ranges' content
# The target then reads the ranges back and compares that digest before it answers.

RECORD = struct.Struct('>QIB')
#: ranges a header may list (a change set is merged into whole clusters first)
MAX_RANGES = 1 << 20
END = (1 << 64) - 1
DATA, ZEROS, FINISH, KEEPALIVE = 0, 1, 2, 3
#: the longest a source keeps the target waiting without a byte while it compares clusters
KEEPALIVE_SECONDS = 10


class PeerStopped(StorageError):
    """The receiving side stopped before the stream ended; its own answer says why."""


def _clusters(spans):
    for offset, length in spans:
        for at in range(offset, offset + length, CLUSTER):
            yield at, min(CLUSTER, offset + length - at)


def _read_exactly(stream, length, what):
    data = stream.read(length)
    if data is None or len(data) != length:
        raise StorageError('The %s ended early (%d of %d bytes).' % (what, len(data or b''), length))
    return data


def send_blocks(reader, size, ranges, wire_out, wire_in, hashes, created=None, keepalive=False):
    """Send ``reader`` over ``ranges`` (None: all of it); with ``hashes``, only clusters the target lacks.

    ``keepalive``: the target takes KEEPALIVE records (its ``info`` says so); one is sent
    when nothing else was for ``KEEPALIVE_SECONDS``. Returns the number of bytes
    written to ``wire_out``.
    """
    spans = aligned([(0, size)] if ranges is None else ranges, size)
    header = json.dumps({'size': size, 'ranges': None if ranges is None else spans, 'hashes': bool(hashes),
                         'created': created})
    wire_out.write(header.encode('ascii') + b'\n')
    sent = len(header) + 1
    theirs = None
    if hashes:
        wire_out.flush()
        if wire_in.peek(1)[:1] != b'H':  # not consumed: the target's answer says why
            raise PeerStopped('The target did not answer with the checksums of its clusters.')
        wire_in.read(1)
        count = struct.unpack('>Q', _read_exactly(wire_in, 8, 'answer of the target'))[0]
        theirs = _read_exactly(wire_in, count * 32, 'list of checksums of the target')
    total = hashlib.sha256()
    index = 0
    flushed, quiet = time.monotonic(), True
    for offset, length in _pieces(spans):
        if keepalive and time.monotonic() - flushed >= KEEPALIVE_SECONDS:  # what is buffered goes now
            if quiet:  # nothing since the last time: a sign of life
                wire_out.write(RECORD.pack(0, 0, KEEPALIVE))
                sent += RECORD.size
            wire_out.flush()
            flushed, quiet = time.monotonic(), True
        data = reader.read(offset, length)
        total.update(data)
        for at in range(0, length, CLUSTER):
            piece = data[at:at + CLUSTER]
            mine = theirs is not None and hashlib.sha256(piece).digest() == theirs[index * 32:index * 32 + 32]
            index += 1
            if mine:
                continue
            quiet = False
            if piece.count(0) == len(piece):
                wire_out.write(RECORD.pack(offset + at, len(piece), ZEROS))
                sent += RECORD.size
            else:
                wire_out.write(RECORD.pack(offset + at, len(piece), DATA))
                wire_out.write(piece)
                sent += RECORD.size + len(piece)
    wire_out.write(RECORD.pack(END, 0, FINISH) + total.digest())
    wire_out.flush()
    return sent + RECORD.size + 32


def read_header(wire_in):
    """The header line of a block stream: ``{"size", "ranges", "hashes", ...}``, checked."""
    line = wire_in.readline(1 << 25)
    try:
        header = json.loads(line.decode('ascii'))
        size, ranges = header['size'], header['ranges']
        if ranges is not None and len(ranges) > MAX_RANGES:
            raise ValueError('ranges')
        if not isinstance(size, int) or size <= 0 or not (ranges is None or all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(n, int) for n in r)
                and 0 <= r[0] and 0 < r[1] and r[0] + r[1] <= size for r in ranges)):
            raise ValueError('bounds')
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise StorageError('The block stream does not start with a valid header.')
    return header


def receive_blocks(image, header, wire_in, wire_out):
    """Apply the block stream after ``header`` from ``wire_in`` to ``image`` (``read``/``write``/``write_zeroes``).

    Returns ``(bytes written, bytes zeroed)`` once the ranges read back with the digest the source sent.
    """
    size, ranges = header['size'], header['ranges']
    spans = aligned([(0, size)] if ranges is None else [tuple(r) for r in ranges], size)
    if header.get('hashes'):
        count = sum(-(-length // CLUSTER) for _offset, length in spans)
        wire_out.write(b'H' + struct.pack('>Q', count))
        for offset, length in _pieces(spans):  # one read a MiB, each cluster's digest as it is read
            data = image.read(offset, length)
            wire_out.write(b''.join(hashlib.sha256(data[at:at + CLUSTER]).digest() for at in range(0, length, CLUSTER)))
        wire_out.flush()
    written = zeroed = 0
    while True:
        offset, length, kind = RECORD.unpack(_read_exactly(wire_in, RECORD.size, 'block stream'))
        if kind == FINISH:
            digest_sent = _read_exactly(wire_in, 32, 'block stream')
            break
        if kind == KEEPALIVE and offset == 0 and length == 0:
            continue
        if kind not in (DATA, ZEROS) or length > CLUSTER or offset % CLUSTER or offset + length > size:
            raise StorageError('The block stream holds a record out of bounds (offset %d, length %d).'
                               % (offset, length))
        if kind == DATA:
            image.write(offset, _read_exactly(wire_in, length, 'block stream'))
            written += length
        else:
            image.write_zeroes(offset, length)
            zeroed += length
    total = hashlib.sha256()
    for offset, length in _pieces(spans):
        total.update(image.read(offset, length))
    if total.digest() != digest_sent:
        raise StorageError('The received data does not read back as the source sent it (SHA-256 differs).')
    return written, zeroed


class Counted:
    """A binary writer that counts the bytes written through it."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def write(self, data):
        self.raw.write(data)
        self.count += len(data)

    def flush(self):
        self.raw.flush()


#: ``ioctl`` that makes a range of a block device read as zeros
BLKZEROOUT = 0x127F


class FullnessGuard:
    """A block stream's destination that calls ``check(bytes written so far)`` every ``every`` bytes written.

    The receiver's check reads how full the storage is (an LVM thin pool, the
    filesystem of an nfs directory) and raises once it is at its limit.
    """

    def __init__(self, writer, check, every):
        self._writer, self._check, self._every = writer, check, every
        self.written = self._since = 0

    def __getattr__(self, name):
        return getattr(self._writer, name)

    def _count(self, length):
        if self._since + length > self._every:
            self._check(self.written)
            self._since = 0
        self._since += length
        self.written += length

    def write(self, offset, data):
        self._count(len(data))
        self._writer.write(offset, data)

    def write_zeroes(self, offset, length):
        self._count(length)
        self._writer.write_zeroes(offset, length)


class BlockWriter(BlockReader):
    """The destination of a block stream that is a block device (an LV); ``skip_zeros`` for one that reads as zeros."""

    _flags, _purpose = os.O_RDWR, 'writing'

    def __init__(self, path, size, what, skip_zeros=False):
        super().__init__(path, size, what)
        self.skip_zeros = skip_zeros

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                os.fsync(self._fd)
        finally:
            super().__exit__(kind, value, traceback)
        return False

    def write(self, offset, data):
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def write_zeroes(self, offset, length):
        if self.skip_zeros:
            return
        try:
            fcntl.ioctl(self._fd, BLKZEROOUT, struct.pack('QQ', offset, length))
        except OSError:
            self.write(offset, bytes(length))


class QuietLimit(io.RawIOBase):
    """Descriptor ``fd`` as a raw stream whose reads fail after ``seconds`` in which no byte arrived.

    A receiver reads the client's stream through it (in a ``BufferedReader``): a
    client that stays connected but sends nothing cannot hold the volume for
    longer; the transfer is then cut as a dropped connection cuts it.
    """

    def __init__(self, fd, seconds):
        super().__init__()
        self.fd = fd
        self.seconds = seconds

    def readable(self):
        return True

    def fileno(self):
        return self.fd

    def wait(self):
        """Return once ``fd`` has data or its end; raise ``StorageError`` after ``seconds`` of silence."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(self.seconds * 1000):
            raise StorageError('No data arrived for %d s, so the transfer was cut; the next run resumes it.'
                               % self.seconds)

    def readinto(self, buffer):
        self.wait()
        return os.readv(self.fd, [buffer])


def _waiter(stream):
    """The ``wait`` of the ``QuietLimit`` under ``stream``, or None."""
    raw = getattr(stream, 'raw', stream)
    return raw.wait if isinstance(raw, QuietLimit) else None


def relay(source, sink, first=b''):
    """Copy ``first``, then ``source`` (a binary stream), into ``sink`` (a process's stdin); close ``sink``.

    Returns the bytes written. Between two file descriptors of which one is a
    pipe the kernel moves the data (``os.splice``), so it does not pass through
    Python; elsewhere, or where the kernel refuses, it is read and written in
    chunks. A sink that stops reading ends the copy quietly: the process's own
    exit code and message say why. A ``QuietLimit`` source keeps its limit on
    silence also where the kernel moves the data.
    """
    sent = 0
    try:
        fds = _splice_pair(source, sink)
        if fds is None:
            if first:
                sink.write(first)
                sent += len(first)
        else:
            pending = first
            if hasattr(source, 'peek'):
                # what the reader holds ahead goes first (peek reads the descriptor only when it holds nothing)
                ahead = source.peek(RELAY_CHUNK)
                pending += source.read(len(ahead)) if ahead else b''
            sink.write(pending)
            sink.flush()  # counted once it has left this process
            sent += len(pending)
        wait = _waiter(source)
        while fds is not None:
            if wait is not None:
                wait()
            try:
                count = os.splice(fds[0], fds[1], RELAY_CHUNK)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                break  # this pair cannot be spliced: copy in chunks
            if not count:
                return sent
            sent += count
        while True:
            chunk = source.read1(RELAY_CHUNK) if hasattr(source, 'read1') else source.read(RELAY_CHUNK)
            if not chunk:
                break
            sink.write(chunk)
            sent += len(chunk)
    except BrokenPipeError:
        pass
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass
    return sent


def _splice_pair(source, sink):
    """The file descriptors of ``source`` and ``sink`` when the kernel can splice between them, else None.

    Each of them that is a pipe is made to hold ``PIPE_BYTES``.
    """
    if not hasattr(os, 'splice'):
        return None
    try:
        fds = source.fileno(), sink.fileno()
        pipes = [fd for fd in fds if stat.S_ISFIFO(os.fstat(fd).st_mode)]
    except (AttributeError, OSError, ValueError):
        return None
    for fd in pipes:
        widen_pipe(fd)
    return fds if pipes else None


def widen_pipe(pipe):
    """Make ``pipe`` (a descriptor or a file) hold ``PIPE_BYTES`` if it is a pipe that holds less.

    Anything else, and a pipe that the kernel keeps smaller, stays as it is.
    """
    try:
        fd = pipe if isinstance(pipe, int) else pipe.fileno()
        if fcntl.fcntl(fd, _F_GETPIPE_SZ) < PIPE_BYTES:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError, ValueError):
        pass  # not a pipe, not Linux, or over /proc/sys/fs/pipe-max-size or pipe-user-pages-soft
