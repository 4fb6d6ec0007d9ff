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

import hashlib
import os
import re
from contextlib import ExitStack

from ansible_collections.stratum.storage.plugins.module_utils._backend import Backend
from ansible_collections.stratum.storage.plugins.module_utils._errors import (
    ChainError, InUseError, InvalidInputError, StorageError)
from ansible_collections.stratum.storage.plugins.module_utils._files import (
    file_lock, read_json, write_json_atomic)
from ansible_collections.stratum.storage.plugins.module_utils._names import NAME_PATTERN, is_valid_name
from ansible_collections.stratum.storage.plugins.module_utils._qcow2 import read_header
from ansible_collections.stratum.storage.plugins.module_utils._runner import command_error
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume, iso_utc, now_utc

SECTOR = 512
LOCK_TIMEOUT = 600
MAX_CHAIN = 1000
RESERVED_SNAPSHOT_NAMES = ('info',)
_BASE_RE = re.compile(r'^volume-(%s)$' % NAME_PATTERN)
_INFO_RE = re.compile(r'^volume-(%s)\.info$' % NAME_PATTERN)
_SHARE_RE = re.compile(r'^[^\s:/]+:/\S*$')


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


class Chain:
    """One volume's validated chain: image headers from base to active, and its maps."""

    def __init__(self, volume, files, info, snapshots, meta):
        self.volume = volume
        self.files = files            # ImageHeader list, base first
        self.info = info              # the info file's JSON object, or None
        self.snapshots = snapshots    # snapshot name -> overlay file name, in chain order
        self.meta = meta              # our metadata (dict)

    @property
    def names(self):
        return [os.path.basename(h.path) for h in self.files]

    @property
    def active(self):
        return self.files[-1]

    def index(self, filename):
        return self.names.index(filename)

    def point_in_time(self, snapshot):
        """The image header holding ``snapshot``'s content (the overlay's backing file)."""
        return self.files[self.index(self.snapshots[snapshot]) - 1]


class NfsBackend(Backend):
    name = 'nfs'
    formats = ('raw', 'qcow2')

    def __init__(self, runner, config):
        super().__init__(runner, config)
        share, path = config.get('share'), config.get('path')
        if share:
            if not _SHARE_RE.match(share):
                raise InvalidInputError('NFS share %r is invalid: expected host:/export.' % share)
            self.directory = share_mount_point(config.get('mount_point_base'), share)
        else:
            self.directory = path

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
        share = self.config.get('share')
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
        if self.config.get('mount_options'):
            argv += ['-o', self.config['mount_options']]
        self.runner.run(argv + [share, self.directory], error='Mounting NFS share %s failed' % share)
        return ['mounted NFS share %s at %s' % (share, self.directory)]

    def lock(self, volumes):
        stack = ExitStack()
        for volume in sorted(set(volumes)):
            stack.enter_context(file_lock(self._lock_path(volume), LOCK_TIMEOUT, 'volume %s' % volume))
        return stack

    # -- reading ----------------------------------------------------------------------

    def allocation_unit(self, volume=None):
        return SECTOR

    def validate_snapshot_name(self, name, volume=None):
        if name in RESERVED_SNAPSHOT_NAMES:
            raise InvalidInputError('Snapshot name %r is reserved by the NFS layout (volume-<name>.%s is the info file).'
                                    % (name, name))

    def _volume_names(self):
        names = set()
        for entry in os.listdir(self.directory):
            match = _BASE_RE.match(entry) or _INFO_RE.match(entry)
            if match:
                names.add(match.group(1))
        return sorted(names)

    def _exists(self, volume):
        return os.path.lexists(self._path(self.base_name(volume))) or os.path.lexists(self._info_path(volume))

    def _check_member(self, volume, filename, what):
        """Refuse a file name that is not a plain name of this volume's layout."""
        base = self.base_name(volume)
        if not isinstance(filename, str) or os.path.isabs(filename) or '/' in filename or filename in ('.', '..'):
            raise ChainError('Volume %s: %s %r is not a plain file name in the volume directory; refused.'
                             % (volume, what, filename))
        if filename != base and not (filename.startswith(base + '.') and is_valid_name(filename[len(base) + 1:])):
            raise ChainError('Volume %s: %s %r does not follow the layout volume-%s[.<snapshot>]; refused.'
                             % (volume, what, filename, volume))

    def load(self, volume):
        """Read and validate ``volume``'s whole chain. Runs no command."""
        info = read_json(self._info_path(volume), 'Info file', ChainError)
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

        headers, seen, current = [], set(), active
        while True:
            if current in seen:
                raise ChainError('Volume %s: the backing chain loops at %s; refused.' % (volume, current))
            if len(headers) >= MAX_CHAIN:
                raise ChainError('Volume %s: the backing chain is longer than %d files; refused.' % (volume, MAX_CHAIN))
            seen.add(current)
            header = read_header(self._path(current))
            headers.append(header)
            if header.backing_file is None:
                break
            self._check_member(volume, header.backing_file, 'backing file of %s' % current)
            current = header.backing_file
        headers.reverse()

        names = [os.path.basename(h.path) for h in headers]
        if names[0] != self.base_name(volume):
            raise ChainError('Volume %s: the chain ends at %s instead of the base file %s; refused.'
                             % (volume, names[0], self.base_name(volume)))
        for lower, upper in zip(headers, headers[1:]):
            declared = upper.backing_format
            if declared is not None and declared != lower.format:
                raise ChainError('Volume %s: %s declares backing format %r but %s is %s; refused.'
                                 % (volume, os.path.basename(upper.path), declared, os.path.basename(lower.path),
                                    lower.format))
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
        meta = read_json(self._meta_path(volume), 'Metadata file', ChainError) or {}
        if not isinstance(meta, dict):
            raise ChainError('Volume %s: metadata file is not a JSON object.' % volume)
        return Chain(volume, headers, info, ordered, meta)

    def _load_or_error(self, volume):
        try:
            return self.load(volume), None
        except ChainError as exc:
            return None, exc.message

    def _volume_record(self, volume, chain, error):
        if error:
            return Volume(name=volume, backend=self.name, status='error',
                          details={'directory': self.directory, 'reason': error})
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
        return Volume(name=volume, backend=self.name, status=meta.get('status', 'available'),
                      size=chain.active.virtual_size, created=meta.get('created'),
                      origin=meta.get('origin'), details=details)

    def _snapshot_records(self, volume, chain, error):
        if error:
            try:
                info = read_json(self._info_path(volume), 'Info file', ChainError)
            except ChainError:
                info = None
            keys = sorted(k for k in info if k != 'active') if isinstance(info, dict) else []
            return [Snapshot(name=key, volume=volume, backend=self.name, status='error',
                             details={'reason': error}) for key in keys]
        records, parent = [], None
        known = chain.meta.get('snapshots') or {}
        for name, filename in chain.snapshots.items():
            image = chain.point_in_time(name)
            meta = known.get(name) or {}
            # An overlay is mapped in the info file only once it is complete, so a
            # leftover "creating" mark from an interrupted run means available.
            status = meta.get('status', 'available')
            if status == 'creating':
                status = 'available'
            records.append(Snapshot(
                name=name, volume=volume, backend=self.name, status=status,
                size=image.virtual_size, created=meta.get('created') or iso_utc(image.mtime), parent=parent,
                details={'file': filename, 'image': os.path.basename(image.path), 'image_format': image.format}))
            parent = name
        # A delete cut off after the info file dropped the snapshot is still pending.
        for name, meta in sorted(known.items()):
            if name not in chain.snapshots and (meta or {}).get('status') == 'pending_delete':
                records.append(Snapshot(name=name, volume=volume, backend=self.name, status='pending_delete',
                                        created=meta.get('created'),
                                        details={'file': meta.get('file'), 'image': None, 'image_format': None}))
        return records

    def list_volumes(self, name=None):
        names = [name] if name is not None else self._volume_names()
        records = []
        for volume in names:
            if name is not None and not self._exists(volume):
                continue
            chain, error = self._load_or_error(volume)
            records.append(self._volume_record(volume, chain, error))
        return records

    def read_volume(self, name):
        if not self._exists(name):
            return None, []
        chain, error = self._load_or_error(name)
        return self._volume_record(name, chain, error), self._snapshot_records(name, chain, error)

    def list_snapshots(self, volume=None):
        names = [volume] if volume is not None else self._volume_names()
        records = []
        for name in names:
            if not self._exists(name):
                continue
            chain, error = self._load_or_error(name)
            records.extend(self._snapshot_records(name, chain, error))
        return records

    def check_rewritable(self, volume, verb=None):
        if volume.status == 'error':
            raise ChainError(volume.details['reason'])
        active = self._path(volume.details['active_file'])
        # qemu-img takes the image lock on open; a running QEMU holding the
        # image makes this read fail, which is how "attached" is detected.
        result = self.runner.run(['qemu-img', 'info', '-f', volume.details['active_format'], '--output=json', active],
                                 check=False)
        if result.rc != 0:
            if 'lock' in result.stderr:
                raise InUseError('Volume %s is in use: another process holds the image lock on %s, so its chain is '
                                 'not rewritten.' % (volume.name, volume.details['active_file']),
                                 stderr=result.stderr)
            raise command_error(result, 'Reading image %s failed' % volume.details['active_file'])

    # -- changes ----------------------------------------------------------------------

    def _qemu_img(self, *args, **kwargs):
        return self.runner.run(['qemu-img'] + list(args), cwd=self.directory, **kwargs)

    def _write_meta(self, volume, meta):
        write_json_atomic(self._meta_path(volume), meta)

    def _write_info(self, volume, info):
        write_json_atomic(self._info_path(volume), info)

    def _publish_new(self, volume, origin):
        self._write_meta(volume, {'created': now_utc(), 'origin': origin, 'snapshots': {}})
        os.rename(self._new_path(volume), self._path(self.base_name(volume)))

    def create_volume(self, name, size, fmt):
        self._qemu_img('create', '-q', '-f', fmt, self._new_path(name), str(size))
        self._publish_new(name, None)

    def clone_volume(self, name, source, snapshot, size, fmt):
        chain = self.load(source)
        image = chain.point_in_time(snapshot) if snapshot else chain.active
        target = self._new_path(name)
        self._qemu_img('convert', '-q', '-f', image.format, '-O', fmt, image.path, target)
        if size > image.virtual_size:
            self._qemu_img('resize', '-q', '-f', fmt, target, str(size))
        self._publish_new(name, {'volume': source, 'snapshot': snapshot})

    def extend_volume(self, name, size):
        active = self.load(name).active
        self._qemu_img('resize', '-q', '-f', active.format, active.path, str(size))

    def delete_volume(self, name):
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
        if os.path.lexists(self._lock_path(name)):
            os.unlink(self._lock_path(name))

    def create_snapshot(self, volume, name):
        chain = self.load(volume)
        overlay = '%s.%s' % (self.base_name(volume), name)
        meta = chain.meta
        snapshots = meta.setdefault('snapshots', {})
        if overlay in chain.names:
            raise ChainError('Volume %s: file %s is already part of its chain; use another snapshot name.'
                             % (volume, overlay))
        if os.path.lexists(self._path(overlay)) and (snapshots.get(name) or {}).get('status') is None:
            raise StorageError('File %s already exists and is not part of volume %s; remove it or use another '
                               'snapshot name.' % (overlay, volume))
        snapshots[name] = {'created': now_utc(), 'status': 'creating'}
        self._write_meta(volume, meta)
        active = chain.active
        self._qemu_img('create', '-q', '-f', 'qcow2', '-F', active.format, '-b', os.path.basename(active.path),
                       self._path(overlay))
        info = dict(chain.info or {})
        info[name] = overlay
        info['active'] = overlay
        self._write_info(volume, info)
        del snapshots[name]['status']
        self._write_meta(volume, meta)

    def delete_snapshot(self, volume, name):
        """Delete ``name``; every step leaves a chain that validates, so a cut-off run is finished by the next.

        1. mark the snapshot pending_delete in our metadata (with its file);
        2. commit its overlay into the image below (which then holds the next point in time);
        3. drop it from the info file (``active`` moves down if the overlay was active);
        4. rebase the overlay above, if any, onto the image below;
        5. remove the overlay and the metadata entry.
        After step 3 the snapshot is listed from the metadata alone, as pending_delete.
        """
        chain = self.load(volume)
        meta = chain.meta
        entries = meta.setdefault('snapshots', {})
        if name in chain.snapshots:
            overlay = chain.snapshots[name]
            below = chain.files[chain.index(overlay) - 1]
            entries[name] = dict(entries.get(name) or {}, status='pending_delete', file=overlay)
            self._write_meta(volume, meta)
            self._qemu_img('commit', '-q', '-f', 'qcow2', '-d', self._path(overlay))
            info = dict(chain.info)
            del info[name]
            if info['active'] == overlay:
                info['active'] = os.path.basename(below.path)
            self._write_info(volume, info)
            chain = self.load(volume)
        else:
            overlay = (entries.get(name) or {}).get('file')
            self._check_member(volume, overlay, 'file of snapshot %s being deleted' % name)
            if overlay == self.base_name(volume):
                raise ChainError('Volume %s: snapshot %s being deleted names the base file; refused.' % (volume, name))
        if overlay in chain.names:
            position = chain.index(overlay)
            if position + 1 >= len(chain.files):
                raise ChainError('Volume %s: %s of snapshot %s being deleted is still the active file; refused.'
                                 % (volume, overlay, name))
            below = chain.files[position - 1]
            above = chain.files[position + 1]
            self._qemu_img('rebase', '-q', '-u', '-f', 'qcow2', '-F', below.format,
                           '-b', os.path.basename(below.path), above.path)
        if os.path.lexists(self._path(overlay)):
            os.unlink(self._path(overlay))
        del entries[name]
        self._write_meta(volume, meta)
