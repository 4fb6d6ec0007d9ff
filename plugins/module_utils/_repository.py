# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup repository: a directory of qcow2 chains in Cinder's layout.

The repository is an nfs-backend directory. Each backed-up volume ``V`` is the
qcow2 volume ``volume-V`` in it, and each backup is a snapshot of that volume:

1. the changed clusters are written into the volume's active file;
2. a snapshot named after the backup is taken, so the backup's content is the
   image below the new overlay, which no later write touches.

``volume-V.stratum.json`` records, besides what the nfs backend keeps:

- ``source``: the host, backend, location and volume the backups come from;
- ``current``: the source snapshot whose content the active file holds now
  (its name, identity and backup), the base of the next incremental;
- per snapshot, ``backup``: where it came from, how it was copied, the bytes
  read and written, the times, and the checksum when verified.

A backup being written has an entry with status ``creating`` and no overlay;
it is listed as ``creating`` and is not restorable. Any later run on that
volume discards what it wrote (the active file is made empty again, so it
reads as the newest backup) before it does anything else.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._errors import (
    ChainError, InvalidInputError, StorageError)
from ansible_collections.stratum.storage.plugins.module_utils._files import fd_path
from ansible_collections.stratum.storage.plugins.module_utils._mover import copy_changes, digest
from ansible_collections.stratum.storage.plugins.module_utils._nbd import NbdExport
from ansible_collections.stratum.storage.plugins.module_utils._names import is_valid_name
from ansible_collections.stratum.storage.plugins.module_utils._nfs import (
    RESERVED_SNAPSHOT_NAMES, NfsBackend, image_opts, pin)
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, now_utc

REPOSITORY_FORMAT = 'qcow2'
DEFAULT_FILE_MODE = '0600'
#: what a backup records about its source and its copy, with the types a listing accepts
BACKUP_FIELDS = {
    'host': str, 'source_backend': str, 'source_location': str, 'source_volume': str, 'snapshot': str,
    'identity': str, 'snapshot_created': str, 'method': str, 'base': str, 'bytes_read': int,
    'bytes_written': int, 'bytes_zeroed': int, 'started': str, 'finished': str, 'checksum': str, 'error': str,
}
SOURCE_FIELDS = ('host', 'backend', 'location', 'volume')


def this_host():
    """The host's configured name (no DNS lookup, so two hosts never both record "localhost")."""
    return socket.gethostname()


class BackupImage:
    """One backup's content, for a restore: its chain is read and pinned only when it is opened."""

    def __init__(self, repository, volume, name, size):
        self.repository = repository
        self.volume = volume
        self.name = name
        self.size = size

    @contextmanager
    def opened(self):
        """Yield ``(image options, descriptors)`` of the backup's chain, under the repository's read lock."""
        store = self.repository.store
        with store.reading(self.volume):
            chain = store.load(self.volume)
            if self.name not in chain.snapshots:
                raise StorageError('Backup %s of volume %s is no longer in the repository.' % (self.name, self.volume))
            files = chain.files[:chain.point_in_time(self.name) + 1]
            with pin(files) as fds:
                yield image_opts(files, fds), list(fds.values())


class Repository:
    """Backups of volumes, kept as snapshots of qcow2 volumes in one directory."""

    def __init__(self, runner, config):
        config = dict(config or {})
        if not config.get('path') and not config.get('share'):
            raise InvalidInputError('The repository needs a path (a directory) or a share (host:/export).')
        self.runner = runner
        self.store = NfsBackend(runner, {
            'path': config.get('path'), 'share': config.get('share'),
            'mount_point_base': config.get('mount_point_base') or '/var/lib/stratum-storage/mnt',
            'mount_options': config.get('mount_options'),
            'file_mode': config.get('file_mode') or DEFAULT_FILE_MODE})

    @property
    def directory(self):
        return self.store.directory

    def connect(self, apply):
        if not self.store.share:
            if not os.path.lexists(self.directory):
                raise StorageError('Repository directory %s does not exist.' % self.directory)
            if not os.path.isdir(self.directory):
                raise StorageError('Repository %s is not a directory.' % self.directory)
        return self.store.connect(apply)

    def lock(self, volumes):
        return self.store.lock(volumes)

    # -- reading ------------------------------------------------------------------------

    def read(self, volume):
        """``(repository volume or None, [backup record], meta)`` of ``volume``; one read under a shared lock."""
        record, snapshots, meta = self.store.read_with_meta(volume)
        if record is None:
            return None, [], {}
        return record, self._backups(volume, record, snapshots, meta), meta

    def list(self, volume=None):
        names = [volume] if volume is not None else self.store.volume_names()
        found = []
        for name in names:
            found.extend(self.read(name)[1])
        return found

    def _backups(self, volume, record, snapshots, meta):
        if record.status == 'error':
            return [Snapshot(name=s.name, volume=volume, backend=None, status='error', details=dict(
                s.details, repository=self.directory)) for s in snapshots if s.name is not None]
        source = meta.get('source') if isinstance(meta.get('source'), dict) else {}
        entries = meta.get('snapshots') or {}
        backups, last = [], None
        for snap in snapshots:
            entry = entries.get(snap.name) or {}
            details = self._details(volume, snap.name, entry, source)
            details['image'] = snap.details.get('image')
            status = snap.status
            if details.get('error') and status == 'available':
                status, details['reason'] = 'error', details['error']
            backups.append(Snapshot(name=snap.name, volume=volume, backend=details['source_backend'],
                                    status=status, size=snap.size, created=snap.created, parent=snap.parent,
                                    details=details))
            if snap.details.get('image') is not None:
                last = snap.name
        for name, entry in sorted(entries.items()):
            if in_progress(entry) and not any(s.name == name for s in snapshots):
                details = self._details(volume, name, entry, source)
                details['image'] = None
                backups.append(Snapshot(name=name, volume=volume, backend=details['source_backend'],
                                        status='creating', size=None, created=entry.get('created'), parent=last,
                                        details=details))
        return backups

    def _details(self, volume, name, entry, source):
        stored = entry.get('backup')
        if stored is None:
            stored = {}
        if not isinstance(stored, dict):
            raise ChainError('Volume %s in repository %s: the record of backup %s is not a JSON object; refused.'
                             % (volume, self.directory, name))
        details = {'repository': self.directory, 'host': source.get('host'), 'source_backend': source.get('backend'),
                   'source_location': source.get('location'), 'source_volume': source.get('volume')}
        for key, kind in BACKUP_FIELDS.items():
            value = stored.get(key, details.get(key))
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ChainError('Volume %s in repository %s: backup %s records a %s value that is not a %s; refused.'
                                 % (volume, self.directory, name, key, 'number' if kind is int else 'string'))
            details[key] = value
        return details

    # -- changes --------------------------------------------------------------------------

    def discard_partial(self, volume, meta):
        """Drop what a backup that did not finish wrote; the volume reads as its newest backup again.

        Returns ``(meta, zeros)``: ``zeros`` is true when the volume is now one empty file.
        """
        entries = meta.get('snapshots') or {}
        partial = [name for name, entry in entries.items() if in_progress(entry)]
        chain = self.store.load(volume)
        partial = [name for name in partial if name not in chain.snapshots]
        if not partial:
            return meta, False
        for name in partial:
            overlay = '%s.%s' % (self.store.base_name(volume), name)
            if overlay in chain.names or not is_valid_name(name) or name in RESERVED_SNAPSHOT_NAMES:
                raise ChainError('Volume %s in repository %s: the record of unfinished backup %s names a file of '
                                 'its chain; refused.' % (volume, self.directory, name))
        self.store.reset_active(volume)
        for name in partial:
            del entries[name]
            # the overlay of a snapshot that a cut run made but never mapped; unlink never follows a link
            overlay = self.store._path('%s.%s' % (self.store.base_name(volume), name))
            if os.path.lexists(overlay):
                os.unlink(overlay)
        newest = list(chain.snapshots)[-1] if chain.snapshots else None
        meta['current'] = current_of(newest, entries.get(newest)) if newest else None
        self.store._write_meta(volume, meta)
        return meta, len(chain.files) == 1

    #: the source ``Backend`` of the backup module's run; set by the manager before a plan is applied
    source = None

    def store_backup(self, volume, name, snapshot, verify):
        """Write ``snapshot`` (a source ``Snapshot`` of the source backend) as backup ``name``; return its details.

        The base is the source snapshot whose content the repository volume holds
        once a cut-off backup is discarded (``base_snapshot``); with a change set
        from it only changed clusters are read.
        """
        store, backend = self.store, self.source
        current, _backups, meta = self.read(volume)
        source = source_of(backend, volume)
        if current is not None and current.status == 'creating' and 'active_file' not in current.details:
            store.delete_volume(volume)  # the first backup was cut off before its volume was made
            current = None
        if current is None:
            store._make_new(volume, REPOSITORY_FORMAT, None, lambda fd: store._qemu_img(
                'create', '-q', '-f', REPOSITORY_FORMAT, fd_path(fd), str(snapshot.size), pass_fds=[fd]))
            meta = store._read_meta(volume)
            meta['source'] = source
            meta['current'] = None
            empty = True
        else:
            check_source(meta, source, volume, self.directory)
            meta, empty = self.discard_partial(volume, meta)
            if snapshot.size < store.load(volume).active.virtual_size:
                raise StorageError('Snapshot %s of volume %s is %d bytes, smaller than its backups; a volume never '
                                   'shrinks, so it is refused.' % (snapshot.name, volume, snapshot.size))
        entries = meta.setdefault('snapshots', {})
        record = {'host': source['host'], 'source_backend': source['backend'], 'source_location': source['location'],
                  'source_volume': volume, 'snapshot': snapshot.name, 'identity': backend.snapshot_identity(snapshot),
                  'snapshot_created': snapshot.created, 'started': now_utc()}
        entries[name] = {'created': now_utc(), 'status': 'creating', 'backup': record}
        store._write_meta(volume, meta)
        chain = store.load(volume)
        if snapshot.size > chain.active.virtual_size:
            store.extend_volume(volume, snapshot.size)
            chain = store.load(volume)
        base = base_snapshot(backend, meta, backend.read_volume(volume)[1], snapshot)
        ranges = backend.changed_ranges(base, snapshot) if base is not None else None
        with pin(chain.files) as fds, \
                NbdExport(self.runner, image_opts(chain.files, fds), fds.values(), writable=True,
                          what='repository volume %s' % volume) as image, \
                backend.open_snapshot(snapshot) as reader:
            copy_changes(reader, image, snapshot.size, ranges, empty)
        record.update(method='changes' if ranges is not None else ('full' if empty else 'compare'),
                      base=base.name if ranges is not None else None, bytes_read=reader.bytes_read,
                      bytes_written=image.bytes_written, bytes_zeroed=image.bytes_zeroed, finished=now_utc())
        meta['current'] = current_of(name, entries[name])
        store._write_meta(volume, meta)
        store.create_snapshot(volume, name)
        if verify:
            self.verify_backup(volume, name, snapshot)
        return record

    def verify_backup(self, volume, name, snapshot):
        """Read the stored backup and its source snapshot; record the checksum when they are equal."""
        store, backend = self.store, self.source
        chain = store.load(volume)
        files = chain.files[:chain.point_in_time(name) + 1]
        with pin(files) as fds, \
                NbdExport(self.runner, image_opts(files, fds), fds.values(),
                          what='backup %s of volume %s' % (name, volume)) as stored, \
                backend.open_snapshot(snapshot) as reader:
            if stored.size != snapshot.size:
                raise StorageError('Backup %s of volume %s is %d bytes but snapshot %s is %d bytes; the backup does '
                                   'not match its source.' % (name, volume, stored.size, snapshot.name, snapshot.size))
            source_sum = digest(reader, snapshot.size)
            stored_sum = digest(stored, snapshot.size)
        if source_sum != stored_sum:
            message = ('Backup %s of volume %s does not match snapshot %s: %s was stored, %s was read from the source.'
                       % (name, volume, snapshot.name, stored_sum, source_sum))
            meta = store._read_meta(volume)
            meta['snapshots'][name].setdefault('backup', {})['error'] = message
            meta['current'] = None  # the next backup compares every cluster instead of trusting a change set
            store._write_meta(volume, meta)
            raise StorageError(message)
        meta = store._read_meta(volume)
        meta['snapshots'][name].setdefault('backup', {})['checksum'] = source_sum
        store._write_meta(volume, meta)
        return source_sum

    def delete_backup(self, volume, name):
        """Delete backup ``name``; every other backup keeps its content (the nfs delete's invariant)."""
        current, backups, meta = self.read(volume)
        entry = (meta.get('snapshots') or {}).get(name) or {}
        if current is not None and current.status == 'creating' and 'active_file' not in current.details:
            self.store.delete_volume(volume)
            return
        meta = self.discard_partial(volume, meta)[0]
        if in_progress(entry) and not any(b.name == name and b.status != 'creating' for b in backups):
            return
        self.store.delete_snapshot(volume, name)


def in_progress(entry):
    """True for the entry of a backup that was started and has no overlay yet."""
    return isinstance(entry, dict) and entry.get('status') == 'creating' and isinstance(entry.get('backup'), dict)


def current_of(name, entry):
    backup = (entry or {}).get('backup') if isinstance(entry, dict) else None
    if not isinstance(backup, dict):
        return None
    return {'backup': name, 'snapshot': backup.get('snapshot'), 'identity': backup.get('identity')}


def source_of(backend, volume):
    return {'host': this_host(), 'backend': backend.name, 'location': backend.location(), 'volume': volume}


def check_source(meta, source, volume, directory):
    """Refuse a repository volume whose backups come from another volume of the same name."""
    recorded = meta.get('source')
    if recorded is None:
        raise StorageError('Volume %s in repository %s was not made by a backup (it records no source); it is left '
                           'alone, so use another repository.' % (volume, directory))
    if not isinstance(recorded, dict):
        raise ChainError('Volume %s in repository %s: its recorded source is not a JSON object; refused.'
                         % (volume, directory))
    if any(recorded.get(key) != source[key] for key in SOURCE_FIELDS):
        recorded = dict((key, recorded.get(key) or 'unknown') for key in SOURCE_FIELDS)
        raise StorageError('Repository %s holds backups of volume %s from %s %s on host %s, not from %s %s on host %s; '
                           'a backup of another volume under the same name is refused, so use another repository.'
                           % (directory, volume, recorded.get('backend'), recorded.get('location'),
                              recorded.get('host'), source['backend'], source['location'], source['host']))


def base_snapshot(backend, meta, snapshots, snapshot):
    """The source snapshot, older than ``snapshot``, whose content the repository volume holds now, or None."""
    current = meta.get('current') if isinstance(meta.get('current'), dict) else None
    identity = current.get('identity') if current else None
    if not identity:
        return None
    entry = (meta.get('snapshots') or {}).get(current.get('backup'))
    recorded = entry.get('backup') if isinstance(entry, dict) else None
    if isinstance(recorded, dict) and recorded.get('identity') != identity:
        return None  # the record of what the volume holds disagrees with its backup: compare instead
    for snap in snapshots:
        if snap.name == snapshot.name:
            return None
        if snap.status == 'available' and backend.snapshot_identity(snap) == identity:
            return snap
    return None
