# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planners: the change a module makes, as a pure function of current and desired state.

A planner reads no storage and changes nothing. It takes the records a backend
read (``Volume``, ``Snapshot``), the validated parameters and what the backend
said about its own options (``Settings``), and returns ``(actions, predicted)``:
the ``Action`` list a real run applies in order, and the record the module
returns after them. Bad input raises ``StorageError`` (or a subclass) with one
sentence. Running a module around a plan is ``_manager``'s job.
"""

from __future__ import annotations

from ansible_collections.stratum.storage.plugins.module_utils._backend import Action, RepositoryVerb, Settings, Verb
from ansible_collections.stratum.storage.plugins.module_utils._errors import (
    ChainError, InvalidInputError, StorageError)
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume
from ansible_collections.stratum.storage.plugins.module_utils._sizes import round_up

DEFAULT_FORMAT = 'raw'
#: no settings to apply; the prediction is the record as it was read
NO_SETTINGS = Settings()


def plan_volume(desired, current, snapshots, source, source_snapshot, backend, unit, settings=NO_SETTINGS, image=None):
    """Return ``(actions, predicted)`` for the ``volume`` module.

    ``desired`` holds validated parameters (``size`` in bytes or None);
    ``current``, ``source`` and ``source_snapshot`` are records or None (for a
    restore, the repository volume and the backup, and ``image`` the backup's
    ``BackupImage``);
    ``unit`` is the backend's allocation unit for the volume (or the source of a
    clone); ``settings`` the ``Settings`` that ``Backend.plan_settings`` gave for
    ``current``.
    """
    name = desired['name']
    if desired['state'] == 'absent':
        if current is None:
            return [], None
        if snapshots and not desired['force']:
            raise StorageError('Volume %s has %d snapshot(s) (%s); delete them first, or set force=true to delete '
                               'them with the volume.' % (name, len(snapshots), ', '.join(s.name for s in snapshots)))
        return [Action(Verb.DELETE_VOLUME, 'delete volume %s%s' % (name, ' and its snapshots' if snapshots else ''),
                       rewrites=[current], name=name)], None

    size = round_up(desired['size'], unit) if desired['size'] is not None else None
    if current is None:
        fmt = desired['format'] or DEFAULT_FORMAT
        if desired.get('source_backup'):
            return _plan_restore(desired, size, fmt, source, source_snapshot, backend, unit, image)
        if desired['source_volume']:
            return _plan_clone(desired, size, fmt, source, source_snapshot, backend, unit)
        if size is None:
            raise InvalidInputError('Volume %s does not exist and no size was given to create it.' % name)
        predicted = Volume(name=name, backend=backend, status='available', size=size, details={'format': fmt})
        return [Action(Verb.CREATE_VOLUME, 'create %s volume %s of %d bytes' % (fmt, name, size),
                       name=name, size=size, fmt=fmt)], predicted

    if current.status == 'error':
        if size is None and desired['format'] is None:
            return [], current
        raise ChainError(current.details.get('reason') or 'Volume %s is in status error.' % name)
    if current.status == 'creating':
        raise StorageError('Volume %s is incomplete (status creating): %s; delete it with state=absent and create it '
                           'again.' % (name, current.details.get('reason')
                                       or 'the run that was filling it stopped before the end'))
    if desired['format'] and desired['format'] != current.details.get('format'):
        raise InvalidInputError('Volume %s has format %s; its format cannot be changed to %s.'
                                % (name, current.details.get('format'), desired['format']))
    actions, predicted = list(settings.actions), settings.predicted or current
    if size is None:
        return actions, predicted
    have = round_up(current.size, unit)
    if size < have:
        raise InvalidInputError('Volume %s is %d bytes; shrinking it to %d bytes is refused.' % (name, have, size))
    if size == have:
        return actions, predicted
    return actions + [Action(Verb.EXTEND_VOLUME, 'grow volume %s from %d to %d bytes' % (name, have, size),
                             rewrites=[current], name=name, size=size)], predicted.replace(size=size)


def _plan_clone(desired, size, fmt, source, source_snapshot, backend, unit):
    name, source_name, snapshot_name = desired['name'], desired['source_volume'], desired['source_snapshot']
    if source is None:
        raise StorageError('Source volume %s of volume %s does not exist.' % (source_name, name))
    if snapshot_name is not None and source_snapshot is None:
        raise StorageError('Snapshot %s of source volume %s does not exist.' % (snapshot_name, source_name))
    origin = source_snapshot or source
    if origin.status != 'available':
        raise StorageError('Cannot clone volume %s from %s: its status is %s.'
                           % (name, _label(source_name, snapshot_name), origin.status))
    source_size = round_up(origin.size, unit)
    if size is not None and size < source_size:
        raise InvalidInputError('Volume %s cannot be %d bytes: its source %s is %d bytes and a clone never shrinks.'
                                % (name, size, _label(source_name, snapshot_name), source_size))
    size = size or source_size
    predicted = Volume(name=name, backend=backend, status='available', size=size,
                       origin={'volume': source_name, 'snapshot': snapshot_name}, details={'format': fmt})
    return [Action(Verb.CLONE_VOLUME, 'clone %s into new %s volume %s of %d bytes'
                   % (_label(source_name, snapshot_name), fmt, name, size),
                   rewrites=[], reads=[source_snapshot or source], name=name, source=source_name,
                   snapshot=snapshot_name, size=size, fmt=fmt)], predicted


def _plan_restore(desired, size, fmt, repository_volume, backup, backend, unit, image):
    name, volume, backup_name = desired['name'], desired['source_volume'], desired['source_backup']
    if repository_volume is None or backup is None:
        raise StorageError('Backup %s of volume %s is not in the repository, so volume %s cannot be restored from it.'
                           % (backup_name, volume, name))
    if backup.status != 'available':
        raise StorageError('Backup %s of volume %s cannot be restored: its status is %s%s.'
                           % (backup_name, volume, backup.status,
                              ' (%s)' % backup.details['reason'].rstrip('.') if backup.details.get('reason') else ''))
    backup_size = round_up(backup.size, unit)
    if size is not None and size < backup_size:
        raise InvalidInputError('Volume %s cannot be %d bytes: backup %s of volume %s is %d bytes and a restore never '
                                'shrinks.' % (name, size, backup_name, volume, backup_size))
    size = size or backup_size
    predicted = Volume(name=name, backend=backend, status='available', size=size, details={'format': fmt})
    return [Action(Verb.RESTORE_VOLUME, 'restore backup %s of volume %s into new %s volume %s of %d bytes'
                   % (backup_name, volume, fmt, name, size), name=name, image=image, size=size, fmt=fmt)], predicted


def _label(volume, snapshot):
    return 'snapshot %s of volume %s' % (snapshot, volume) if snapshot else 'volume %s' % volume


def plan_snapshot(desired, volume, snapshots, backend, deferred_delete=False, settings=NO_SETTINGS, leftover=None):
    """Return ``(actions, predicted)`` for the ``snapshot`` module.

    With ``deferred_delete`` a snapshot in ``pending_delete`` counts as deleted:
    the storage system removes it once nothing depends on it. ``settings`` is
    the ``Settings`` that ``Backend.plan_settings`` gave for the existing snapshot; ``leftover``
    what a delete of it leaves listed (None, or the snapshot as ``pending_delete``).
    """
    name, volume_name = desired['name'], desired['volume']
    existing = next((s for s in snapshots if s.name == name), None)
    if volume is not None and volume.status == 'error' and (existing is None or desired['state'] == 'absent'):
        # The chain cannot be read, so neither "exists" nor "absent" can be trusted.
        raise ChainError(volume.details.get('reason') or 'Volume %s is in status error.' % volume_name)
    if desired['state'] == 'absent':
        if existing is None:
            return [], None
        if deferred_delete and existing.status == 'pending_delete':
            return [], existing
        return [Action(Verb.DELETE_SNAPSHOT, 'delete snapshot %s of volume %s' % (name, volume_name),
                       rewrites=[volume], volume=volume_name, name=name)], leftover
    if volume is None:
        raise StorageError('Volume %s does not exist, so snapshot %s cannot be taken.' % (volume_name, name))
    if volume.status == 'inbound' and existing is None:
        raise StorageError('Volume %s is receiving a replica (status inbound), so snapshot %s cannot be taken now.'
                           % (volume_name, name))
    if existing is not None:
        if existing.status == 'pending_delete':
            raise StorageError('Snapshot %s of volume %s is being deleted; finish that with state=absent first.'
                               % (name, volume_name))
        return list(settings.actions), settings.predicted or existing
    temporary = bool(desired.get('temporary'))
    predicted = Snapshot(name=name, volume=volume_name, backend=backend, status='available', size=volume.size,
                         parent=snapshots[-1].name if snapshots else None, details={'temporary': temporary})
    kind = 'temporary snapshot' if temporary else 'snapshot'
    return [Action(Verb.CREATE_SNAPSHOT, 'take %s %s of volume %s' % (kind, name, volume_name),
                   rewrites=[volume], volume=volume_name, name=name, temporary=temporary)], predicted


def plan_backup(desired, snapshot, identity, backups, base, backend):
    """Return ``(actions, predicted)`` for the ``backup`` module; the actions are the repository's.

    ``snapshot`` is the source snapshot record (or None) and ``identity`` what
    the backend says tells it apart; ``backups`` the repository's records of
    the volume; ``base`` the source snapshot that the repository volume holds
    now (an incremental reads only what changed since), or None.
    """
    name, volume, snapshot_name = desired['name'], desired['volume'], desired['snapshot']
    existing = next((b for b in backups if b.name == name), None)
    if desired['state'] == 'absent':
        if existing is None:
            return [], None
        what = 'discard the unfinished backup' if existing.status == 'creating' else 'delete backup'
        return [Action(RepositoryVerb.DELETE_BACKUP, '%s %s of volume %s' % (what, name, volume),
                       volume=volume, name=name)], None
    if existing is not None and existing.status in ('error', 'pending_delete'):
        raise StorageError(existing.details.get('reason') or 'Backup %s of volume %s is in status %s; %s.' % (
            name, volume, existing.status, 'finish its delete with state=absent first'
            if existing.status == 'pending_delete' else 'delete it with state=absent'))
    if existing is not None and existing.status == 'available':
        stored = existing.details
        if stored.get('snapshot') != snapshot_name or (identity is not None and stored.get('identity') is not None
                                                       and stored['identity'] != identity):
            raise StorageError('Backup %s of volume %s already holds snapshot %s (identity %s), not snapshot %s%s; '
                               'give this backup another name.'
                               % (name, volume, stored.get('snapshot'), stored.get('identity'), snapshot_name,
                                  ' (identity %s)' % identity if identity else ''))
        if desired['verify'] and not stored.get('checksum'):
            _require(snapshot, snapshot_name, volume, name)
            return [Action(RepositoryVerb.VERIFY_BACKUP, 'verify backup %s of volume %s against snapshot %s'
                           % (name, volume, snapshot_name), volume=volume, name=name, snapshot=snapshot)], existing
        return [], existing
    _require(snapshot, snapshot_name, volume, name)
    complete = [b for b in backups if b.status == 'available']
    parent = complete[-1].name if complete else None
    if complete and complete[-1].size is not None and snapshot.size < complete[-1].size:
        raise StorageError('Snapshot %s of volume %s is %d bytes, smaller than the %d bytes of backup %s; a volume '
                           'never shrinks, so it is refused.'
                           % (snapshot_name, volume, snapshot.size, complete[-1].size, parent))
    unfinished = [b.name for b in backups if b.status == 'creating' and b.name != name]
    how = 'the changes since snapshot %s' % base.name if base is not None else (
        'every cluster that differs from backup %s' % parent if parent else 'all of it')
    predicted = Snapshot(name=name, volume=volume, backend=backend, status='available', size=snapshot.size,
                         parent=parent, details={'source_volume': volume, 'snapshot': snapshot_name,
                                                 'identity': identity, 'base': base.name if base else None,
                                                 'checksum': None, 'bytes_read': None, 'bytes_written': None})
    redo = 'discard the unfinished backup %s, then ' % ', '.join(
        ([name] if existing is not None else []) + unfinished) if existing is not None or unfinished else ''
    return [Action(RepositoryVerb.STORE_BACKUP, '%sstore snapshot %s of volume %s as backup %s (%s)%s'
                   % (redo, snapshot_name, volume, name, how, ', then verify it' if desired['verify'] else ''),
                   volume=volume, name=name, snapshot=snapshot, verify=desired['verify'])], predicted


def _require(snapshot, snapshot_name, volume, name):
    if snapshot is None:
        raise StorageError('Snapshot %s of volume %s does not exist, so backup %s cannot be made of it.'
                           % (snapshot_name, volume, name))
    if snapshot.status != 'available':
        raise StorageError('Snapshot %s of volume %s is in status %s, so backup %s cannot be made of it.'
                           % (snapshot_name, volume, snapshot.status, name))
