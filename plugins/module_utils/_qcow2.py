# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read image headers without opening anything they point to.

The NFS backend validates a whole backing chain before qemu-img touches it, so
the chain is read here from the qcow2 headers directly: a hostile backing file
name is seen and refused, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from ansible_collections.stratum.storage.plugins.module_utils._errors import ChainError

QCOW2_MAGIC = b'QFI\xfb'
_EXT_END = 0x00000000
_EXT_BACKING_FORMAT = 0xe2792aca
_EXT_DATA_FILE = 0x44415441
_INCOMPAT_DATA_FILE = 1 << 2
_MAX_BACKING_NAME = 1023
_MAX_HEADER_READ = 2 << 20


class ImageHeader:
    """What the chain walk needs to know about one image file."""

    __slots__ = ('path', 'format', 'virtual_size', 'backing_file', 'backing_format', 'mtime', 'identity')

    def __init__(self, path, fmt, virtual_size, backing_file=None, backing_format=None, mtime=None, identity=None):
        self.path = path
        self.format = fmt
        self.virtual_size = virtual_size
        self.backing_file = backing_file
        self.backing_format = backing_format
        self.mtime = mtime
        self.identity = identity  # (st_dev, st_ino) of the file that was read


def _open(path):
    """Open ``path`` for reading: a regular file, never through a link, never blocking."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ChainError('Image file %s does not exist.' % name)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise ChainError('Image file %s is not a regular file (symlinks and devices are refused).' % name)
        raise ChainError('Image file %s cannot be read: %s.' % (name, exc.strerror))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ChainError('Image file %s is not a regular file (symlinks and devices are refused).' % name)
    if info.st_nlink != 1:
        os.close(fd)
        raise ChainError('Image file %s has %d hard links; an image that is also another file is refused.'
                         % (name, info.st_nlink))
    return os.fdopen(fd, 'rb'), info


def has_qcow2_magic(path):
    """True when ``path`` starts with the qcow2 magic.

    Only a hint: a guest of a raw volume can write these bytes, so a format is
    never decided from this alone.
    """
    handle, _info = _open(path)
    with handle:
        return handle.read(4) == QCOW2_MAGIC


def read_header(path, fmt):
    """Return the ``ImageHeader`` of ``path``, read as format ``fmt`` (``raw`` or ``qcow2``).

    The format comes from the caller (our record, or what the chain declares),
    never from the content. The file must be a regular file (not a symlink). A
    raw image is not read at all; a qcow2 image must carry the qcow2 magic, and
    one with an external data file is refused.
    """
    name = os.path.basename(path)
    handle, info = _open(path)
    with handle:
        if fmt == 'raw':
            return ImageHeader(path, 'raw', info.st_size, mtime=info.st_mtime, identity=(info.st_dev, info.st_ino))
        if fmt != 'qcow2':
            raise ChainError('Image file %s has format %r, which is not raw or qcow2.' % (name, fmt))
        head = handle.read(512)
        if head[:4] != QCOW2_MAGIC:
            raise ChainError('Image file %s should be qcow2 but has no qcow2 header.' % name)
        if len(head) < 72:
            raise ChainError('Image file %s has a truncated qcow2 header.' % name)
        (version, backing_offset, backing_size, cluster_bits, virtual_size) = struct.unpack('>IQIIQ', head[4:32])
        if version not in (2, 3):
            raise ChainError('Image file %s has unsupported qcow2 version %d.' % (name, version))
        if not 9 <= cluster_bits <= 21:
            raise ChainError('Image file %s has an invalid qcow2 cluster size.' % name)
        cluster_size = 1 << cluster_bits
        handle.seek(0)
        block = handle.read(min(cluster_size, _MAX_HEADER_READ))
    header_length = 72
    if version == 3:
        if len(block) < 104:
            raise ChainError('Image file %s has a truncated qcow2 header.' % name)
        incompatible = struct.unpack('>Q', block[72:80])[0]
        header_length = struct.unpack('>I', block[100:104])[0]
        if incompatible & _INCOMPAT_DATA_FILE:
            raise ChainError('Image file %s uses an external qcow2 data file, which is refused.' % name)
    backing_file = None
    if backing_offset:
        if backing_size > _MAX_BACKING_NAME or backing_offset + backing_size > len(block):
            raise ChainError('Image file %s has an invalid backing file name field.' % name)
        raw_name = block[backing_offset:backing_offset + backing_size]
        try:
            backing_file = raw_name.decode('utf-8')
        except UnicodeDecodeError:
            raise ChainError('Image file %s has a backing file name that is not UTF-8.' % name)
    backing_format = None
    for ext_type, data in _extensions(block, header_length, name):
        if ext_type == _EXT_BACKING_FORMAT:
            backing_format = data.decode('ascii', 'replace')
        elif ext_type == _EXT_DATA_FILE:
            raise ChainError('Image file %s names an external qcow2 data file, which is refused.' % name)
    return ImageHeader(path, 'qcow2', virtual_size, backing_file, backing_format, info.st_mtime,
                       (info.st_dev, info.st_ino))


def _extensions(block, offset, name):
    """Yield ``(type, data)`` for each qcow2 header extension."""
    while True:
        if offset + 8 > len(block):
            raise ChainError('Image file %s has truncated qcow2 header extensions.' % name)
        ext_type, length = struct.unpack('>II', block[offset:offset + 8])
        if ext_type == _EXT_END:
            return
        start = offset + 8
        if start + length > len(block):
            raise ChainError('Image file %s has truncated qcow2 header extensions.' % name)
        yield ext_type, block[start:start + length]
        offset = start + ((length + 7) & ~7)
