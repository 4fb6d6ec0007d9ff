# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qcow2 volume chains in a directory (usually an NFS share), in Cinder's layout.

Files of volume ``V`` in the directory:

- ``volume-V``: the base image (raw or qcow2);
- ``volume-V.S``: the qcow2 overlay created when snapshot ``S`` was taken;
- ``volume-V.info``: Cinder's JSON map ``{"active": file, "S": file, ...}``;
- ``volume-V.stratum.json``: our metadata (creation times, operation status);
- ``volume-V.stratum.lock``: the per-volume lock file.

A snapshot's point-in-time content is the backing file of the overlay that the
info file maps it to. Names with a dot after ``volume-V.`` can never be a
snapshot overlay, because snapshot names have no dots.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
import uuid
from contextlib import ExitStack, contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._backend import Backend
from ansible_collections.stratum.storage.plugins.module_utils._errors import (
    ChainError, InUseError, InvalidInputError, StorageError)
from ansible_collections.stratum.storage.plugins.module_utils._files import (
    HeldLocks, create_new, fd_path, file_lock, holder, os_error, pinned, read_json, revalidate_directory, same_file,
    write_json_atomic)
from ansible_collections.stratum.storage.plugins.module_utils._names import NAME_PATTERN, is_valid_name
from ansible_collections.stratum.storage.plugins.module_utils._qcow2 import has_qcow2_magic, read_header
from ansible_collections.stratum.storage.plugins.module_utils._schema import (
    STATUSES, Snapshot, Volume, iso_utc, now_utc)

SECTOR = 512
LOCK_TIMEOUT = 600
MAX_CHAIN = 1000
RESERVED_SNAPSHOT_NAMES = ('info',)
FORMATS = ('raw', 'qcow2')
#: Cinder's NFS driver and this module write every snapshot overlay as qcow2
OVERLAY_FORMAT = 'qcow2'
#: room kept free beyond the overlay's allocated bytes when a commit needs space
COMMIT_MARGIN = 1 << 20
#: bytes a receive writes between two readings of how full the directory's filesystem is
SPACE_CHECK_BYTES = 256 << 20
_FILE_RE = re.compile(r'volume-(%s)(\.info|\.stratum\.new)?' % NAME_PATTERN)
#: where ``_qemu_img_on`` puts ``--image-opts`` and the chain's options
IMAGE_OPTS = object()
_SHARE_RE = re.compile(r'[^\s:/]+:/\S*')
#: what Cinder's NFS driver accepts: volume ids are UUIDs, and a backing file is
#: volume-<id> or volume-<id>.<hex digits and dashes> (remotefs' backing file check)
_CINDER_VOLUME_RE = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', re.IGNORECASE)
_CINDER_SNAPSHOT_RE = re.compile(r'[0-9a-f-]+', re.IGNORECASE)
_FILE_MODE_RE = re.compile(r'0?[0-7]{3}')
#: the mode Cinder gives the files of a new volume in its secure mode, the default of a new
#: installation (nas_secure_file_permissions=auto)
DEFAULT_FILE_MODE = '0660'


def share_mount_point(base, share):
    """The mount point Cinder uses for ``share``: ``base`` plus the share's MD5 hex digest."""
    try:
        digest = hashlib.md5(share.encode('utf-8'), usedforsecurity=False)
    except TypeError:  # Python < 3.9 has no usedforsecurity
        digest = hashlib.md5(share.encode('utf-8'))  # nosec
    return os.path.join(base, digest.hexdigest())


def _mounts():
    """Mount points and file system types from /proc/self/mounts."""
    with open('/proc/self/mounts', 'r', encoding='utf-8') as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 3:
                yield fields[1].replace('\\040', ' '), fields[2], fields[0]


def _arrived(chain):
    """The snapshot a receive marked the volume for, when it was taken with the identity the mark names."""
    inbound = chain.meta.get('inbound') if isinstance(chain.meta.get('inbound'), dict) else None
    name = inbound.get('snapshot') if inbound is not None else None
    if not isinstance(name, str) or name not in chain.snapshots:
        return None
    entry = (chain.meta.get('snapshots') or {}).get(name)
    # mapped in the info file, the overlay is complete even if the run was killed before it dropped "creating"
    if isinstance(entry, dict) and entry.get('status') in (None, 'creating') \
            and entry.get('uuid') == inbound.get('identity'):
        return name
    return None


def _sentences(method):
    """Turn an ``OSError`` of a change into one sentence that names the volume and the file."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            volume = kwargs.get('volume') or kwargs.get('name') or args[0]
            raise os_error(exc, 'Volume %s: changing' % volume, exc.filename or self.directory)
    return wrapper


class Chain:
    """One volume's validated chain: image headers from base to active, and its maps."""

    def __init__(self, volume, files, info, snapshots, meta):
        self.volume = volume
        self.files = files            # ImageHeader list, base first, each with its decided format
        self.info = info              # the info file's JSON object, or None
        self.snapshots = snapshots    # snapshot name -> overlay file name, in chain order
        self.meta = meta              # our metadata (dict, validated)

    @property
    def names(self):
        return [os.path.basename(h.path) for h in self.files]

    @property
    def active(self):
        return self.files[-1]

    def index(self, filename):
        return self.names.index(filename)

    def point_in_time(self, snapshot):
        """The position of the image holding ``snapshot``'s content (the overlay's backing file)."""
        return self.index(self.snapshots[snapshot]) - 1


def image_opts(files, fds=None):
    """``qemu-img --image-opts`` for the chain ``files`` (base first): every layer's format is given.

    qemu then never probes a format and never follows a backing name or a
    backing format written in a header. With ``fds`` (``{path: descriptor}`` from
    ``pinned``) every layer is opened by its descriptor, so qemu works on exactly
    the files that were validated.
    """
    parts, prefix = [], ''
    for header in reversed(files):
        name = fd_path(fds[header.path]) if fds else header.path
        parts.append('%sdriver=%s' % (prefix, header.format))
        parts.append('%sfile.filename=%s' % (prefix, name.replace(',', ',,')))
        prefix += 'backing.'
    return ','.join(parts)


def pin(files):
    """``pinned`` for chain ``files``: each opened by descriptor, checked to be the file that was read."""
    return pinned([(header.path, header.identity) for header in files])


class NfsBackend(Backend):
    name = 'nfs'
    formats = FORMATS
    #: set by the replication receiver: a receive stops once the filesystem of the directory is this full
    #: (percent, read before writing and every SPACE_CHECK_BYTES), so a replica does not fill a shared share
    space_limit = None

    def __init__(self, runner, config):
        super().__init__(runner, config)
        share, path = config.get('share'), config.get('path')
        self.share, self.mount_options = share or None, config.get('mount_options') or None
        if share:
            if not _SHARE_RE.fullmatch(share):
                raise InvalidInputError('NFS share %r is invalid: expected host:/export.' % share)
            self.directory = share_mount_point(config.get('mount_point_base'), share)
        else:
            self.directory = path
        mode = config.get('file_mode') or DEFAULT_FILE_MODE
        if not isinstance(mode, str) or not _FILE_MODE_RE.fullmatch(mode):
            raise InvalidInputError('nfs.file_mode %r is not an octal mode such as 0666 or 0660.' % (mode,))
        self.file_mode = int(mode, 8)
        self.cinder_compatible = bool(config.get('cinder_compatible'))
        self._locked = set()

    # -- file names -------------------------------------------------------------------

    def _path(self, filename):
        return os.path.join(self.directory, filename)

    @staticmethod
    def base_name(volume):
        return 'volume-%s' % volume

    def _info_path(self, volume):
        return self._path('volume-%s.info' % volume)

    def _meta_path(self, volume):
        return self._path('volume-%s.stratum.json' % volume)

    def _lock_path(self, volume):
        return self._path('volume-%s.stratum.lock' % volume)

    def _new_path(self, volume):
        return self._path('volume-%s.stratum.new' % volume)

    # -- connection and locking ---------------------------------------------------------

    def connect(self, apply):
        share = self.share
        if not share:
            if not os.path.isdir(self.directory):
                raise StorageError('Volume directory %s does not exist.' % self.directory)
            return []
        for mount_point, fstype, source in _mounts():
            if mount_point == self.directory:
                if not fstype.startswith('nfs'):
                    raise StorageError('%s is mounted from %s (%s), not from NFS share %s.'
                                       % (self.directory, source, fstype, share))
                return []
        if not apply:
            raise StorageError('NFS share %s is not mounted at %s, and this run does not mount it (check mode and '
                               'the info modules never mount).' % (share, self.directory))
        os.makedirs(self.directory, exist_ok=True)
        argv = ['mount', '-t', 'nfs']
        if self.mount_options:
            argv += ['-o', self.mount_options]
        self.runner.run(argv + [share, self.directory], error='Mounting NFS share %s failed' % share)
        return ['mounted NFS share %s at %s' % (share, self.directory)]

    def lock(self, volumes):
        """Exclusive locks on ``volumes``; a lock file whose volume is gone afterwards is removed."""
        stack = HeldLocks()
        try:
            for volume in sorted(set(volumes)):
                fd = stack.enter_context(file_lock(self._lock_path(volume), LOCK_TIMEOUT, 'volume %s' % volume,
                                                   attrs=self._attrs(volume)))
                stack.callback(self._unlocked, volume, fd)
                self._locked.add(volume)
            revalidate_directory(self.directory)  # see what runs on other hosts wrote before the lock
        except BaseException:
            stack.close()
            raise
        return stack

    def _unlocked(self, volume, fd):
        self._locked.discard(volume)
        path = self._lock_path(volume)
        if not self._exists(volume) and same_file(path, os.fstat(fd).st_ino):
            try:
                os.unlink(path)
            except OSError:
                pass

    def _reading(self, volume):
        """A shared lock for reading ``volume``, unless this run already holds its exclusive lock.

        A reader never creates the lock file; without one no change is in progress.
        """
        if volume in self._locked:
            return ExitStack()
        stack = ExitStack()
        try:
            revalidate_directory(self.directory)  # a lock file another host made is seen
            stack.enter_context(file_lock(self._lock_path(volume), LOCK_TIMEOUT, 'volume %s' % volume, shared=True))
            revalidate_directory(self.directory)  # and so is what it wrote before its lock was released
        except BaseException:
            stack.close()
            raise
        return stack

    # -- reading ----------------------------------------------------------------------

    def allocation_unit(self, volume=None):
        return SECTOR

    def validate_volume_name(self, name):
        if self.cinder_compatible and not _CINDER_VOLUME_RE.fullmatch(name):
            raise InvalidInputError('Volume name %r is not a UUID, and nfs.cinder_compatible asks for names that '
                                    'Cinder accepts (it names volumes volume-<UUID>).' % name)

    def validate_snapshot_name(self, name, volume=None):
        if self.cinder_compatible and not _CINDER_SNAPSHOT_RE.fullmatch(name):
            raise InvalidInputError('Snapshot name %r is not hex digits and dashes, and nfs.cinder_compatible asks '
                                    'for names that Cinder accepts (it refuses a volume whose backing file is named '
                                    'otherwise).' % name)
        if name in RESERVED_SNAPSHOT_NAMES:
            raise InvalidInputError('Snapshot name %r is reserved by the NFS layout (volume-<name>.%s is the info file).'
                                    % (name, name))

    def _volume_names(self):
        try:
            entries = os.listdir(self.directory)
        except OSError as exc:
            raise os_error(exc, 'Listing volume directory', self.directory)
        names = set()
        for entry in entries:
            match = _FILE_RE.fullmatch(entry)
            if match:
                names.add(match.group(1))
        return sorted(names)

    def _exists(self, volume):
        return any(os.path.lexists(p) for p in (self._path(self.base_name(volume)), self._info_path(volume),
                                                self._new_path(volume)))

    def _partial(self, volume):
        """True when only the new file of an unfinished create or clone is there."""
        return (os.path.lexists(self._new_path(volume)) and not os.path.lexists(self._path(self.base_name(volume)))
                and not os.path.lexists(self._info_path(volume)))

    def _check_member(self, volume, filename, what):
        """Refuse a file name that is not a plain name of this volume's layout."""
        base = self.base_name(volume)
        if not isinstance(filename, str) or os.path.isabs(filename) or '/' in filename or filename in ('.', '..'):
            raise ChainError('Volume %s: %s %r is not a plain file name in the volume directory; refused.'
                             % (volume, what, filename))
        if filename != base and not (filename.startswith(base + '.') and is_valid_name(filename[len(base) + 1:])):
            raise ChainError('Volume %s: %s %r does not follow the layout volume-%s[.<snapshot>]; refused.'
                             % (volume, what, filename, volume))

    def _read_meta(self, volume):
        """Our metadata of ``volume``, every value checked for its type; {} when there is none."""
        path = self._meta_path(volume)
        meta = read_json(path, 'Metadata file', ChainError)
        if meta is None:
            return {}
        name = os.path.basename(path)

        def refuse(what):
            raise ChainError('Volume %s: metadata file %s %s; refused.' % (volume, name, what))

        if not isinstance(meta, dict):
            refuse('is not a JSON object')
        if not isinstance(meta.get('created'), (str, type(None))):
            refuse('has a "created" that is not a string')
        if meta.get('status') is not None and meta['status'] not in STATUSES:
            refuse('has an unknown status %r' % (meta['status'],))
        if meta.get('format') is not None and meta['format'] not in FORMATS:
            refuse('records an unknown format %r' % (meta['format'],))
        origin = meta.get('origin')
        if origin is not None and not (isinstance(origin, dict) and isinstance(origin.get('volume'), str)
                                       and isinstance(origin.get('snapshot'), (str, type(None)))):
            refuse('has an "origin" that is not {"volume": name, "snapshot": name or null}')
        snapshots = meta.get('snapshots')
        if snapshots is None:
            return meta
        if not isinstance(snapshots, dict):
            refuse('has "snapshots" that is not a JSON object')
        for key, entry in snapshots.items():
            if not is_valid_name(key):
                refuse('names snapshot %r, which is not a valid snapshot name' % (key,))
            if not isinstance(entry, dict):
                refuse('has an entry for snapshot %s that is not a JSON object' % key)
            if entry.get('status') not in (None, 'creating', 'pending_delete', 'inbound'):
                refuse('has an unknown status %r for snapshot %s' % (entry.get('status'), key))
            for field in ('created', 'file', 'into', 'uuid'):
                if not isinstance(entry.get(field), (str, type(None))):
                    refuse('has a "%s" of snapshot %s that is not a string' % (field, key))
        return meta

    def _base_format(self, volume, meta, declared, above):
        """The base file's format: recorded at creation, else declared by the overlay above it.

        A volume without a record was written by Cinder. Its base is raw when it
        has no qcow2 header (Cinder writes raw or qcow2 only); with a qcow2
        header and nothing that declares it, the header may be a raw guest's
        data, so the format cannot be decided and the volume is refused.
        """
        base = self.base_name(volume)
        recorded = meta.get('format')
        if recorded is not None:
            if declared is not None and declared != recorded:
                raise ChainError('Volume %s: %s declares backing format %r but %s is recorded as %s; refused.'
                                 % (volume, above, declared, base, recorded))
            return recorded
        if declared is not None:
            if declared not in FORMATS:
                raise ChainError('Volume %s: %s declares backing format %r, which is not raw or qcow2; refused.'
                                 % (volume, above, declared))
            return declared
        if not has_qcow2_magic(self._path(base)):
            return 'raw'
        raise ChainError('Volume %s: the format of %s cannot be decided safely: none is recorded, %s, and its qcow2 '
                         'header may have been written by the guest of a raw volume; refused.'
                         % (volume, base, '%s declares no backing format' % above if above else 'no overlay declares it'))

    def load(self, volume):
        """Read and validate ``volume``'s whole chain. Runs no command."""
        info = read_json(self._info_path(volume), 'Info file', ChainError)
        meta = self._read_meta(volume)
        if info is None:
            active, snapshot_files = self.base_name(volume), {}
        else:
            if not isinstance(info, dict) or not isinstance(info.get('active'), str):
                raise ChainError('Volume %s: info file is not a JSON object with an "active" file name.' % volume)
            active = info['active']
            snapshot_files = {}
            for key, value in info.items():
                if key == 'active':
                    continue
                if not is_valid_name(key):
                    raise ChainError('Volume %s: info file key %r is not a valid snapshot name; refused.' % (volume, key))
                self._check_member(volume, value, 'snapshot %s file' % key)
                snapshot_files[key] = value
        self._check_member(volume, active, 'active file')

        base = self.base_name(volume)
        headers, seen, current, declared = [], set(), active, None
        while True:
            if current in seen:
                raise ChainError('Volume %s: the backing chain loops at %s; refused.' % (volume, current))
            if len(headers) >= MAX_CHAIN:
                raise ChainError('Volume %s: the backing chain is longer than %d files; refused.' % (volume, MAX_CHAIN))
            seen.add(current)
            above = os.path.basename(headers[-1].path) if headers else None
            if current == base:
                fmt = self._base_format(volume, meta, declared, above)
            else:
                fmt = OVERLAY_FORMAT
                if declared not in (None, fmt):
                    raise ChainError('Volume %s: %s declares backing format %r but the overlay %s is %s; refused.'
                                     % (volume, above, declared, current, fmt))
            header = read_header(self._path(current), fmt)
            headers.append(header)
            if header.backing_file is None:
                break
            self._check_member(volume, header.backing_file, 'backing file of %s' % current)
            declared = header.backing_format
            current = header.backing_file
        headers.reverse()

        names = [os.path.basename(h.path) for h in headers]
        if names[0] != base:
            raise ChainError('Volume %s: the chain ends at %s instead of the base file %s; refused.'
                             % (volume, names[0], base))
        position = dict((name, i) for i, name in enumerate(names))
        owners = {}
        for key, filename in snapshot_files.items():
            if position.get(filename, 0) == 0:
                raise ChainError('Volume %s: snapshot %s maps to %s, which is not an overlay in the chain; refused.'
                                 % (volume, key, filename))
            if filename in owners:
                raise ChainError('Volume %s: snapshots %s and %s map to the same file %s; refused.'
                                 % (volume, owners[filename], key, filename))
            owners[filename] = key
        ordered = dict(sorted(snapshot_files.items(), key=lambda item: position[item[1]]))
        return Chain(volume, headers, info, ordered, meta)

    def _records(self, volume):
        """``(Volume, [Snapshot])`` of ``volume``, read under a shared lock; a broken volume is status error."""
        return self.read_with_meta(volume)[:2]

    def read_with_meta(self, volume):
        """``(Volume or None, [Snapshot], our metadata)`` of ``volume`` from one read under a shared lock."""
        if not self._exists(volume):
            return None, [], {}
        try:
            with self._reading(volume):
                if self._partial(volume):
                    return self._partial_record(volume), [], {}
                try:
                    chain = self.load(volume)
                except OSError as exc:
                    raise ChainError(os_error(exc, 'Volume %s: reading' % volume, exc.filename or '').message)
                except ChainError as exc:
                    return self._error_record(volume, exc.message), self._error_snapshots(volume, exc.message), {}
        except StorageError as exc:  # the lock file itself is refused, or a writer holds it too long
            return self._error_record(volume, exc.message), self._error_snapshots(volume, exc.message), {}
        return self._volume_record(volume, chain), self._snapshot_records(volume, chain), chain.meta

    def reading(self, volume):
        """The shared lock of a reader of ``volume`` (nothing when this run holds its exclusive lock)."""
        return self._reading(volume)

    def volume_names(self):
        """The names of the volumes that have a file in the directory."""
        return self._volume_names()

    def _partial_record(self, volume):
        new = os.path.basename(self._new_path(volume))
        return Volume(name=volume, backend=self.name, status='creating', details={
            'directory': self.directory, 'files': [new],
            'reason': 'only %s exists, the partial file of a create or clone that did not finish' % new})

    def _error_record(self, volume, reason):
        return Volume(name=volume, backend=self.name, status='error',
                      details={'directory': self.directory, 'reason': reason})

    def _error_snapshots(self, volume, reason):
        """The snapshots of a volume whose chain cannot be read: named by the info file, else by our metadata."""
        keys = None
        for path, what in ((self._info_path(volume), 'Info file'), (self._meta_path(volume), 'Metadata file')):
            try:
                found = read_json(path, what, ChainError)
            except (ChainError, OSError):
                continue
            if what == 'Metadata file' and isinstance(found, dict):
                found = found.get('snapshots')
            if isinstance(found, dict):
                keys = sorted(k for k in found if k != 'active' and isinstance(k, str))
                break
        return [Snapshot(name=key, volume=volume, backend=self.name, status='error', details={'reason': reason})
                for key in (keys if keys is not None else [None])]

    def _volume_record(self, volume, chain):
        meta = chain.meta
        details = {
            'directory': self.directory,
            'base_file': chain.names[0],
            'active_file': chain.names[-1],
            'format': chain.files[0].format,
            'active_format': chain.active.format,
            'files': chain.names,
            'info_file': os.path.basename(self._info_path(volume)) if chain.info is not None else None,
        }
        status = meta.get('status', 'available')
        if status == 'inbound' and _arrived(chain):  # the snapshot was taken; only the mark was left
            status = 'available'
        return Volume(name=volume, backend=self.name, status=status,
                      size=chain.active.virtual_size, created=meta.get('created'),
                      origin=meta.get('origin'), details=details)

    def _snapshot_records(self, volume, chain):
        records, parent = [], None
        known = chain.meta.get('snapshots') or {}
        for name, filename in chain.snapshots.items():
            image = chain.files[chain.point_in_time(name)]
            meta = known.get(name) or {}
            # An overlay is mapped in the info file only once it is complete, so a
            # leftover "creating" mark from an interrupted run means available.
            status = meta.get('status', 'available')
            if status == 'creating':
                status = 'available'
            records.append(Snapshot(
                name=name, volume=volume, backend=self.name, status=status,
                size=image.virtual_size, created=meta.get('created') or iso_utc(image.mtime), parent=parent,
                details={'file': filename, 'image': os.path.basename(image.path), 'image_format': image.format,
                         'uuid': meta.get('uuid'), 'temporary': meta.get('temporary') is True,
                         'holds': len(_holds(meta))}))
            parent = name
        # A delete cut off after the info file dropped the snapshot is still pending; a replica
        # that is arriving is listed before its overlay exists.
        for name, meta in sorted(known.items()):
            if name not in chain.snapshots and meta.get('status') in ('pending_delete', 'inbound'):
                records.append(Snapshot(name=name, volume=volume, backend=self.name, status=meta['status'],
                                        created=meta.get('created'), parent=parent if meta['status'] == 'inbound' else None,
                                        details={'file': meta.get('file'), 'image': None, 'image_format': None,
                                                 'uuid': meta.get('uuid'), 'temporary': meta.get('temporary') is True,
                                                 'holds': len(_holds(meta))}))
        return records

    def list_volumes(self, name=None):
        names = [name] if name is not None else self._volume_names()
        return [self._records(volume)[0] for volume in names if self._exists(volume)]

    def read_volume(self, name):
        if not self._exists(name):
            return None, []
        return self._records(name)

    def list_snapshots(self, volume=None):
        names = [volume] if volume is not None else self._volume_names()
        records = []
        for name in names:
            if self._exists(name):
                records.extend(self._records(name)[1])
        return records

    # -- predictions (what a create will return; only creation knows "created") ---------

    def predict_volume(self, predicted):
        base, fmt = self.base_name(predicted.name), predicted.details['format']
        return predicted.replace(details={
            'directory': self.directory, 'base_file': base, 'active_file': base, 'format': fmt,
            'active_format': fmt, 'files': [base], 'info_file': None})

    def predict_snapshot(self, predicted, volume, snapshots):
        in_chain = [s.name for s in snapshots if s.details.get('image') is not None]
        return predicted.replace(parent=in_chain[-1] if in_chain else None, details={
            'file': '%s.%s' % (self.base_name(volume.name), predicted.name),
            'image': volume.details['active_file'], 'image_format': volume.details['active_format'],
            'uuid': None, 'temporary': bool(predicted.details.get('temporary')), 'holds': 0})

    # -- preflight checks (read only) -------------------------------------------------

    def check_rewritable(self, volume, verb=None):
        """Refuse when another process holds a file that ``verb`` rewrites or removes, or writes one it reads.

        QEMU locks each image it opens, backing files included; the lock test
        runs no command and takes no lock. A snapshot or a grow rewrites the
        active file; a delete rewrites or removes any file of the chain. A clone
        only reads: it is refused only while another process may write what it
        reads, so a snapshot of a volume that a running guest has attached can be
        cloned (its files are the guest's read-only backing files), and the live
        volume of that guest cannot (the guest writes its active file).
        """
        if isinstance(volume, Snapshot):
            chain = self.load(volume.volume)
            self._refuse_held(volume.volume, chain.names[:chain.point_in_time(volume.name) + 1], writers_only=True)
            return
        if volume.status == 'error':
            raise ChainError(volume.details['reason'])
        if verb == 'clone_volume':
            self._refuse_held(volume.name, volume.details['files'], writers_only=True)
            return
        if volume.status == 'creating' and 'active_file' not in volume.details:
            files = [f for f in volume.details['files'] if stat.S_ISREG(os.lstat(self._path(f)).st_mode)]
        elif verb in ('delete_volume', 'delete_snapshot'):
            files = volume.details['files']
        else:
            files = [volume.details['active_file']]
        self._refuse_held(volume.name, files)

    def _refuse_held(self, name, files, writers_only=False):
        for filename in files:
            try:
                pid = holder(self._path(filename), writers_only)
            except OSError as exc:
                raise os_error(exc, 'Volume %s: testing' % name, filename)
            if pid is not None:
                raise InUseError('Volume %s is in use: %s holds the image lock on %s, so %s.'
                                 % (name, 'process %d' % pid if pid > 0 else 'another process', filename,
                                    'it may be writing what a clone would read' if writers_only
                                    else 'its chain is not rewritten'))

    # -- changes ----------------------------------------------------------------------

    def _qemu_img(self, *args, **kwargs):
        return self.runner.run(['qemu-img'] + list(args), cwd=self.directory, **kwargs)

    def _qemu_img_on(self, files, args, **kwargs):
        """``qemu-img`` with ``--image-opts`` for chain ``files``, each layer opened by its descriptor."""
        with pin(files) as fds:
            before, after = args[:args.index(IMAGE_OPTS)], args[args.index(IMAGE_OPTS) + 1:]
            extra = list(kwargs.pop('pass_fds', ()))
            return self._qemu_img(*(before + ['--image-opts', image_opts(files, fds)] + after),
                                  pass_fds=list(fds.values()) + extra, **kwargs)

    def _attrs(self, volume):
        """``(mode, uid, gid)`` for a new file of ``volume``: its base file's, as Cinder's files follow it.

        A volume without a base file yet (being created) gets ``nfs.file_mode``
        and the user the module runs as.
        """
        try:
            info = os.lstat(self._path(self.base_name(volume)))
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            return self.file_mode, None, None
        return stat.S_IMODE(info.st_mode) & 0o777, info.st_uid, info.st_gid

    def _write_meta(self, volume, meta):
        write_json_atomic(self._meta_path(volume), meta, self._attrs(volume))

    def _write_info(self, volume, info):
        write_json_atomic(self._info_path(volume), info, self._attrs(volume))

    def _discard(self, path, inode):
        """Remove ``path`` if it is still the file this run created."""
        if same_file(path, inode):
            try:
                os.unlink(path)
            except OSError:
                pass

    def _written(self, path, inode):
        if not same_file(path, inode):
            raise StorageError('File %s was replaced while this run wrote it; it is left alone.'
                               % os.path.basename(path))

    def _make_new(self, name, fmt, origin, fill):
        """Create ``volume-<name>.stratum.new`` exclusively, ``fill`` it, record it, then rename it into place.

        On any failure the new file is removed; a killed run leaves it listed
        as status creating, removed by state=absent.
        """
        path = self._new_path(name)
        fd = create_new(path, self._attrs(name))
        inode = os.fstat(fd).st_ino
        try:
            fill(fd)  # the command writes the descriptor (/dev/fd/N), never a name someone could swap
            self._written(path, inode)
            self._write_meta(name, {'created': now_utc(), 'origin': origin, 'snapshots': {}, 'format': fmt})
            os.rename(path, self._path(self.base_name(name)))
        except BaseException:
            self._discard(path, inode)
            raise
        finally:
            os.close(fd)

    @_sentences
    def create_volume(self, name, size, fmt):
        self._make_new(name, fmt, None, lambda fd: self._qemu_img('create', '-q', '-f', fmt, fd_path(fd), str(size),
                                                                  pass_fds=[fd]))

    @_sentences
    def clone_volume(self, name, source, snapshot, size, fmt):
        chain = self.load(source)
        files = chain.files[:chain.point_in_time(snapshot) + 1] if snapshot else chain.files
        image = files[-1]

        def fill(fd):
            self._qemu_img_on(files, ['convert', '-q', IMAGE_OPTS, '-O', fmt, fd_path(fd)], pass_fds=[fd])
            if size > image.virtual_size:
                self._qemu_img('resize', '-q', '--image-opts', 'driver=%s,file.filename=%s' % (fmt, fd_path(fd)),
                               str(size), pass_fds=[fd])
        self._make_new(name, fmt, {'volume': source, 'snapshot': snapshot}, fill)

    @_sentences
    def extend_volume(self, name, size):
        chain = self.load(name)
        self._qemu_img_on(chain.files, ['resize', '-q', IMAGE_OPTS, str(size)])

    @_sentences
    def delete_volume(self, name):
        if self._partial(name):  # a killed create or clone may also have written our metadata
            for path in (self._new_path(name), self._meta_path(name)):
                if os.path.lexists(path):
                    os.unlink(path)
            return
        chain = self.load(name)
        for path in (self._info_path(name), self._meta_path(name)):
            if os.path.lexists(path):
                os.unlink(path)
        for header in reversed(chain.files):
            os.unlink(header.path)
        prefix = self.base_name(name) + '.'
        for entry in os.listdir(self.directory):
            if entry.startswith(prefix) and (is_valid_name(entry[len(prefix):]) or entry == prefix + 'stratum.new'):
                os.unlink(self._path(entry))

    @_sentences
    def create_snapshot(self, volume, name, temporary=False):
        chain = self.load(volume)
        overlay = '%s.%s' % (self.base_name(volume), name)
        path = self._path(overlay)
        meta = chain.meta
        snapshots = meta.setdefault('snapshots', {})
        if overlay in chain.names:
            raise ChainError('Volume %s: file %s is already part of its chain; use another snapshot name.'
                             % (volume, overlay))
        if os.path.lexists(path):
            # what an interrupted create of this snapshot left: a regular file with our "creating" mark
            if (snapshots.get(name) or {}).get('status') != 'creating' or not stat.S_ISREG(os.lstat(path).st_mode):
                raise StorageError('File %s already exists and was not left by this module for volume %s; remove '
                                   'it or use another snapshot name.' % (overlay, volume))
            os.unlink(path)
        # an entry made before (the record of a backup being stored) keeps its other keys
        entry = dict(snapshots.get(name) or {}, created=now_utc(), status='creating')
        entry.setdefault('uuid', str(uuid.uuid4()))
        if temporary:
            entry['temporary'] = True
        snapshots[name] = entry
        self._write_meta(volume, meta)
        active = chain.active
        fd = create_new(path, self._attrs(volume))
        inode = os.fstat(fd).st_ino
        try:
            # -u: the backing file is not opened (the chain was validated); the size is given
            self._qemu_img('create', '-q', '-f', OVERLAY_FORMAT, '-u', '-F', active.format,
                           '-b', os.path.basename(active.path), fd_path(fd), str(active.virtual_size), pass_fds=[fd])
            self._written(path, inode)
        except BaseException:
            self._discard(path, inode)
            raise
        finally:
            os.close(fd)
        info = dict(chain.info or {})
        info[name] = overlay
        info['active'] = overlay
        self._write_info(volume, info)
        del snapshots[name]['status']
        self._write_meta(volume, meta)

    def _check_space(self, volume, name, overlay, below):
        """Refuse before anything is marked when the share cannot hold what the commit may write."""
        needed = os.lstat(overlay.path).st_blocks * 512 + COMMIT_MARGIN
        fs = os.statvfs(self.directory)
        free = fs.f_bavail * fs.f_frsize
        if free < needed:
            raise StorageError('Volume %s: deleting snapshot %s commits up to %d bytes into %s, but the share has only '
                               '%d bytes of free space; nothing was changed.'
                               % (volume, name, needed, os.path.basename(below.path), free))

    def _repair_leaks(self, files):
        """``qemu-img check -r leaks`` on the top of ``files``: a commit cut off half-way can leak clusters."""
        if files[-1].format == 'qcow2':
            self._qemu_img_on(files, ['check', '-q', '-r', 'leaks', IMAGE_OPTS],
                              error='Repairing leaked clusters of %s failed' % os.path.basename(files[-1].path))

    @_sentences
    def delete_snapshot(self, volume, name):
        """Delete ``name``; every step leaves a chain that validates, so a cut-off run is finished by the next.

        0. check the free space (the probe for held files ran before), so a refusal marks nothing;
        1. mark the snapshot pending_delete in our metadata (with its file and the file below);
        2. commit its overlay into the image below (which then holds the next point in time);
           finishing a delete that was cut off repairs leaked clusters of the image below;
        3. drop it from the info file (``active`` moves down if the overlay was active);
        4. rebase the overlay above, if any, onto the image below;
        5. remove the overlay and the metadata entry.
        After step 3 the snapshot is listed from the metadata alone, as pending_delete.
        """
        chain = self.load(volume)
        meta = chain.meta
        entries = meta.setdefault('snapshots', {})
        entry = entries.get(name) or {}
        resuming = entry.get('status') == 'pending_delete'
        if _holds(entry) and not resuming:
            raise StorageError('Snapshot %s of volume %s is held by %s (the last snapshot replicated there); delete '
                               'that replica first.' % (name, volume, ', '.join(_holds(entry))))
        if name in chain.snapshots:
            overlay = chain.snapshots[name]
            position = chain.index(overlay)
            below = chain.files[position - 1]
            if not resuming:
                self._check_space(volume, name, chain.files[position], below)
            entries[name] = dict(entry, status='pending_delete', file=overlay, into=os.path.basename(below.path))
            self._write_meta(volume, meta)
            self._qemu_img_on(chain.files[:position + 1], ['commit', '-q', '-d', IMAGE_OPTS])
            if resuming:
                self._repair_leaks(chain.files[:position])
            info = dict(chain.info)
            del info[name]
            if info['active'] == overlay:
                info['active'] = os.path.basename(below.path)
            self._write_info(volume, info)
            chain = self.load(volume)
        else:
            overlay = entry.get('file')
            self._check_member(volume, overlay, 'file of snapshot %s being deleted' % name)
            if overlay == self.base_name(volume):
                raise ChainError('Volume %s: snapshot %s being deleted names the base file; refused.' % (volume, name))
            into = entry.get('into')
            if into in chain.names:
                self._repair_leaks(chain.files[:chain.index(into) + 1])
        if overlay in chain.names:
            position = chain.index(overlay)
            if position + 1 >= len(chain.files):
                raise ChainError('Volume %s: %s of snapshot %s being deleted is still the active file; refused.'
                                 % (volume, overlay, name))
            below = chain.files[position - 1]
            above = chain.files[position + 1]
            with pin([above]) as fds:
                self._qemu_img('rebase', '-q', '-u', '-f', OVERLAY_FORMAT, '-F', below.format,
                               '-b', os.path.basename(below.path), fd_path(fds[above.path]), pass_fds=[fds[above.path]])
        if os.path.lexists(self._path(overlay)):
            os.unlink(self._path(overlay))
        del entries[name]
        self._write_meta(volume, meta)

    # -- the data mover ------------------------------------------------------------------

    def location(self):
        return self.share or self.directory

    def snapshot_identity(self, snapshot):
        return snapshot.details.get('uuid')

    def uses_directory(self, directory):
        try:
            return os.path.samefile(self.directory, directory)
        except OSError:
            return os.path.abspath(self.directory) == os.path.abspath(directory)

    def _files_of(self, chain, snapshot):
        if snapshot not in chain.snapshots:
            raise StorageError('Volume %s: snapshot %s is not in its chain.' % (chain.volume, snapshot))
        return chain.files[:chain.point_in_time(snapshot) + 1]

    @contextmanager
    def open_snapshot(self, snapshot):
        """Serve ``snapshot``'s image and its backing chain read-only through qemu-nbd."""
        from ansible_collections.stratum.storage.plugins.module_utils._nbd import NbdExport

        files = self._files_of(self.load(snapshot.volume), snapshot.name)
        with pin(files) as fds:
            with NbdExport(self.runner, image_opts(files, fds), fds.values(),
                           what='snapshot %s of volume %s' % (snapshot.name, snapshot.volume)) as reader:
                yield reader

    def changed_ranges(self, base, snapshot):
        """The clusters allocated in the overlays between ``base``'s image and ``snapshot``'s (``qemu-img map``)."""
        chain = self.load(snapshot.volume)
        if base.name not in chain.snapshots or snapshot.name not in chain.snapshots:
            return None
        above = chain.point_in_time(snapshot.name) - chain.point_in_time(base.name)
        if above <= 0:
            return None
        files = self._files_of(chain, snapshot.name)
        result = self._qemu_img_on(files, ['map', '--output=json', IMAGE_OPTS],
                                   error='Mapping the clusters of volume %s failed' % snapshot.volume)
        try:
            extents = json.loads(result.stdout)
            return [(int(e['start']), int(e['length'])) for e in extents
                    if int(e['depth']) < above and e.get('present', True)]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError('qemu-img map printed an unexpected allocation map: %s.' % exc)

    # -- replication (the source side: holds) ----------------------------------------------

    def holds(self, volume, snapshots):
        """The hold tags on each of ``snapshots`` (names) of ``volume``, from our metadata."""
        entries = self._read_meta(volume).get('snapshots') or {}
        return dict((name, set(_holds(entries.get(name) or {}))) for name in snapshots)

    @_sentences
    def hold(self, volume, snapshot, tag):
        with self._meta_update(volume) as entries:
            entry = entries.setdefault(snapshot, {})
            entry['holds'] = sorted(set(_holds(entry)) | {tag})

    @_sentences
    def release(self, volume, snapshot, tag):
        with self._meta_update(volume) as entries:
            entry = entries.get(snapshot)
            if entry is not None:
                entry['holds'] = [t for t in _holds(entry) if t != tag]
                if not entry['holds']:
                    del entry['holds']

    @contextmanager
    def _meta_update(self, volume):
        meta = self._read_meta(volume)
        yield meta.setdefault('snapshots', {})
        self._write_meta(volume, meta)

    # -- replication (the target side) ------------------------------------------------------

    def reset_active(self, volume):
        """Make the active file empty again, so it reads as the image below it (or as zeros, alone).

        The new file is made beside it and renamed over it.
        """
        chain = self.load(volume)
        active = chain.active
        self.check_rewritable(self.read_volume(volume)[0], 'delete_volume')
        new = self._new_path(volume)
        if os.path.lexists(new):
            os.unlink(new)  # left by a cut run; unlink never follows a link
        fd = create_new(new, self._attrs(volume))
        inode = os.fstat(fd).st_ino
        try:
            if len(chain.files) == 1:
                self._qemu_img('create', '-q', '-f', active.format, fd_path(fd), str(active.virtual_size),
                               pass_fds=[fd])
            else:
                below = chain.files[-2]
                self._qemu_img('create', '-q', '-f', OVERLAY_FORMAT, '-u', '-F', below.format,
                               '-b', os.path.basename(below.path), fd_path(fd), str(active.virtual_size),
                               pass_fds=[fd])
            self._written(new, inode)
            os.rename(new, active.path)
        except BaseException:
            if os.path.lexists(new):
                os.unlink(new)
            raise
        finally:
            os.close(fd)

    @_sentences
    def replica_state(self, volume):
        """The replica arriving in ``volume`` (``inbound``), and the bytes written to it since its newest snapshot."""
        chain = self.load(volume)
        inbound = chain.meta.get('inbound') if isinstance(chain.meta.get('inbound'), dict) else None
        arrived = _arrived(chain)
        written = None
        if len(chain.files) > 1:
            result = self._qemu_img_on(chain.files, ['map', '--output=json', IMAGE_OPTS],
                                       error='Mapping the clusters of volume %s failed' % volume)
            try:
                written = sum(int(e['length']) for e in json.loads(result.stdout)
                              if int(e['depth']) == 0 and e.get('present', True))
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError('qemu-img map printed an unexpected allocation map: %s.' % exc)
        return {'token': None, 'written': written, 'inbound': None if arrived else inbound, 'replacing': arrived}

    @_sentences
    def settle(self, volume, fresh=True, apply=True):
        """Drop the mark a receive left when it was killed after taking its snapshot (called under the lock)."""
        try:
            arrived = _arrived(self.load(volume)) if self._exists(volume) else None
        except StorageError:  # a chain that cannot be read has nothing of a receive to finish
            return None
        if arrived is None:
            return None
        if apply:
            meta = self._read_meta(volume)
            inbound = meta.pop('inbound', None)
            meta.pop('status', None)
            entry = meta['snapshots'][arrived]
            entry.pop('status', None)
            if isinstance(inbound, dict) and isinstance(inbound.get('created'), str):
                entry['created'] = inbound['created']  # the source's time, as an uncut receive records it
            self._write_meta(volume, meta)
        return 'finish what the receive of replica snapshot %s left on volume %s' % (arrived, volume)

    @contextmanager
    def receive_into(self, volume, snapshot, identity, base_identity, size, created, resume, check):
        """Yield the volume's active file (writable, through qemu-nbd) for the block stream of ``snapshot``.

        Under the volume's lock ``check(current, snapshots, state)`` runs, the
        volume is created if needed and marked; the data is written without the
        lock (the mark keeps other changes away, and readers list the volume and
        the snapshot as ``inbound`` meanwhile); then, under the lock again, the
        snapshot is taken with the source's identity as its UUID and the mark goes.
        """
        from ansible_collections.stratum.storage.plugins.module_utils._nbd import NbdExport

        stack = ExitStack()
        with self.lock([volume]):
            self.settle(volume)
            current, snapshots = self.read_volume(volume)
            check(current, snapshots, self.replica_state(volume) if current is not None else {})
            if self.space_limit is not None:  # before anything is made or marked
                self._check_fill(0)
            if current is None:
                self.create_volume(volume, size, 'qcow2')
            meta = self._read_meta(volume)
            meta['inbound'] = {'snapshot': snapshot, 'identity': identity, 'base': base_identity, 'created': created}
            meta['status'] = 'inbound'
            meta.setdefault('snapshots', {})[snapshot] = {'uuid': identity, 'status': 'inbound', 'created': created}
            self._write_meta(volume, meta)
            chain = self.load(volume)
            if size > chain.active.virtual_size:
                self.extend_volume(volume, size)
                chain = self.load(volume)
            fds = stack.enter_context(pin(chain.files))
        with stack, NbdExport(self.runner, image_opts(chain.files, fds), fds.values(), writable=True,
                              what='volume %s' % volume) as image:
            if self.space_limit is None:
                yield image
            else:  # imported here: a module run that receives nothing does not compile the data mover
                from ansible_collections.stratum.storage.plugins.module_utils._mover import FullnessGuard
                yield FullnessGuard(image, self._check_fill, SPACE_CHECK_BYTES)
        with self.lock([volume]):
            self.create_snapshot(volume, snapshot)
            meta = self._read_meta(volume)
            meta.pop('inbound', None)
            meta.pop('status', None)
            if created is not None:
                meta['snapshots'][snapshot]['created'] = created
            self._write_meta(volume, meta)

    def _check_fill(self, written):
        """Raise when the filesystem of the directory is ``space_limit`` percent full or more.

        The percentage is df's ``Use%``: used blocks over used and available ones, rounded up.
        """
        try:
            fs = os.statvfs(self.directory)
        except OSError as exc:
            raise os_error(exc, 'Reading how full the filesystem is', self.directory)
        used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
        room = used + fs.f_bavail * fs.f_frsize
        full = -(-used * 100 // room) if room else 100
        if full >= self.space_limit:
            then = ('nothing was written, and the next run tries again once it has room.' if not written else
                    'the transfer stopped after writing %d bytes and resumes on the next run once it has room.'
                    % written)
            raise StorageError('The filesystem of %s is %d%% full (as df counts), at or above the receiver\'s limit of '
                               '%s%%; %s' % (self.directory, full, self.space_limit, then))

    @_sentences
    def abort_receive(self, volume):
        """Drop what a cut replica wrote: a volume it was creating goes, another one reads as its newest snapshot."""
        if not self._exists(volume):
            return
        if self.settle(volume):  # a receive killed after its snapshot was taken: the volume keeps what it holds
            return
        chain = self.load(volume)
        inbound = chain.meta.get('inbound') if isinstance(chain.meta.get('inbound'), dict) else None
        if inbound is None:
            return  # nothing arrives: the volume is left as it is
        if len(chain.files) == 1 and chain.meta.get('status') == 'inbound':
            self.delete_volume(volume)
            return
        self.reset_active(volume)
        meta = self._read_meta(volume)
        entries = meta.get('snapshots') or {}
        name = inbound.get('snapshot')
        if name in entries and entries[name].get('status') == 'inbound' and name not in chain.snapshots:
            del entries[name]
        meta.pop('inbound', None)
        meta.pop('status', None)
        self._write_meta(volume, meta)

    @_sentences
    def restore_volume(self, name, image, size, fmt):
        def fill(fd):
            with image.opened() as (opts, fds):
                self._qemu_img('convert', '-q', '--image-opts', opts, '-O', fmt, fd_path(fd), pass_fds=list(fds) + [fd],
                               error='Restoring backup %s of volume %s failed' % (image.name, image.volume))
            if size > image.size:
                self._qemu_img('resize', '-q', '--image-opts', 'driver=%s,file.filename=%s' % (fmt, fd_path(fd)),
                               str(size), pass_fds=[fd])
        self._make_new(name, fmt, None, fill)


def _holds(entry):
    """The hold tags recorded on a snapshot's metadata entry (a list of strings), or []."""
    holds = entry.get('holds') if isinstance(entry, dict) else None
    return [t for t in holds if isinstance(t, str)] if isinstance(holds, list) else []
