# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager: runs a module around the pure planners of ``_planner``.

One run reads the current state, plans the change (a pure function), and in a
real run takes the lock, reads and plans again under it (unless the lock shows
that no run held it since the first read), applies the actions in order and
returns the record read afterwards (after a delete, null without a read). Because the plan is computed before anything is applied, check mode
reports exactly what a real run would do, and a run whose plan is empty issues
read commands only. The calls it makes on a backend, and their order, are
listed on ``Backend``. The backup repository's code is imported only by the
handlers that use it.
"""

from __future__ import annotations

from typing import NamedTuple

from ansible_collections.stratum.storage.plugins.module_utils._backend import Settings, Verb
from ansible_collections.stratum.storage.plugins.module_utils._errors import ChainError, InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._files import os_error
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name
from ansible_collections.stratum.storage.plugins.module_utils._planner import (
    NO_SETTINGS, plan_backup, plan_snapshot, plan_volume)
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandRunner
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size

__all__ = ['BACKENDS', 'run_module']


def _creates(actions, *verbs):
    """True when the plan ends by creating the record it predicts."""
    return bool(actions) and actions[-1].verb in verbs


# -- applying -----------------------------------------------------------------------------

def _converge(module, backend, read_and_plan, lock_names, reuse=True, more_locks=None):
    """Plan from a fresh read; in a real run, re-read and re-plan under the lock, then apply.

    With ``reuse``, the read under the lock is left out when the locks show that no
    run took them since the first read began (``Backend.lock_turns``); a plan that
    also reads what these locks do not cover (a backup repository) passes False.
    ``more_locks(before, actions)`` names volumes that the first read shows the change
    reaches as well; they are locked too, and the read is then made again under the locks.
    """
    turns = None if module.check_mode or not reuse else backend.lock_turns(lock_names)
    before, actions, predicted = read_and_plan()
    if actions and not module.check_mode:
        extra = [name for name in (more_locks(before, actions) if more_locks else []) if name not in lock_names]
        with backend.lock(list(lock_names) + extra) as taken:
            if turns is None or extra or turns != taken:
                backend.forget()  # a volume the first read listed and this one does not is read again if used
                before, actions, predicted = read_and_plan()
            # what a killed replica receive committed to is finished first (LVM thin), then planned again
            settled = [_Settled(done) for done in (backend.settle(name, fresh=False)
                                                   for name in list(lock_names) + extra) if done]
            if settled:
                before, actions, predicted = read_and_plan()
            _preflight(backend, actions)
            for action in actions:
                action.apply(backend)
            actions = settled + actions
    elif actions:
        _preflight(backend, actions)
        actions = [_Settled(done) for done in (backend.settle(name, fresh=False, apply=False)
                                               for name in lock_names) if done] + actions
    return before, actions, predicted


class _Settled(NamedTuple):
    """What ``Backend.settle`` finished before a change, reported among its actions."""

    description: str
    verb: str = 'settle'


def _preflight(backend, actions):
    for action in actions:
        for record in action.checks:
            backend.check_rewritable(record, action.verb)


def _result(module, key, before, after, actions, connected):
    result = {
        'changed': bool(actions or connected),
        'actions': connected + [a.description for a in actions],
        key: after.to_dict() if after is not None else None,
    }
    if module._diff:
        result['diff'] = {'before': before.to_dict() if before is not None else {},
                          'after': after.to_dict() if after is not None else {}}
    return result


def ensure_volume(module, backend):
    params = module.params
    desired = dict(params)
    desired['name'] = validate_name(params['name'], 'volume')
    desired['size'] = parse_size(params['size']) if params['size'] is not None else None
    # an empty name (a templated variable that is empty) is invalid, never "not given"
    restore = params.get('source_backup') is not None
    if params['source_volume'] is not None:
        validate_name(params['source_volume'], 'source volume')
        if params['source_volume'] == desired['name'] and not restore:
            raise InvalidInputError('Volume %s cannot be cloned from itself.' % desired['name'])
    if params['source_snapshot'] is not None:
        validate_name(params['source_snapshot'], 'source snapshot')
    repository = None
    if restore:
        from ansible_collections.stratum.storage.plugins.module_utils._repository import BackupImage, Repository
        validate_name(params['source_backup'], 'source backup')
        repository = Repository(CommandRunner(module), params['repository'])
    elif params.get('repository') is not None:
        raise InvalidInputError('Option repository is used with source_backup only (to restore a backup).')
    backend.validate_volume_name(desired['name'])
    if params['format'] and params['format'] not in backend.formats:
        raise InvalidInputError('The %s backend stores volumes in format %s only, not %s.'
                                % (backend.name, ' or '.join(backend.formats), params['format']))
    connected = backend.connect(apply=not module.check_mode)
    if repository is not None:
        connected += repository.connect(apply=not module.check_mode)
        if backend.uses_directory(repository.directory):
            raise InvalidInputError('The repository %s is the volume directory of the nfs backend itself; restore '
                                    'into another directory.' % repository.directory)

    def read_and_plan():
        current, snapshots = backend.read_volume(desired['name'])
        source = source_snapshot = image = None
        if current is None and restore and desired['state'] == 'present':
            source, backups, _meta = repository.read(desired['source_volume'])
            source_snapshot = next((b for b in backups if b.name == desired['source_backup']), None)
            if source_snapshot is not None:
                image = BackupImage(repository, desired['source_volume'], desired['source_backup'],
                                    source_snapshot.size)
        elif current is None and desired['source_volume'] and desired['state'] == 'present':
            source, source_snapshots = backend.read_volume(desired['source_volume'])
            source_snapshot = next((s for s in source_snapshots if s.name == desired['source_snapshot']), None)
        settings = NO_SETTINGS
        if current is not None and desired['state'] == 'present' and current.status != 'error':
            settings = Settings._make(backend.plan_settings(current))
        actions, predicted = plan_volume(desired, current, snapshots, source, source_snapshot, backend.name,
                                         backend.allocation_unit(current or (None if restore else source)), settings,
                                         image)
        if _creates(actions, Verb.CREATE_VOLUME, Verb.CLONE_VOLUME, Verb.RESTORE_VOLUME):
            predicted = backend.predict_volume(predicted)
        return current, actions, predicted

    def origin_of_a_deleted_clone(current, actions):
        """Deleting a clone can end its origin's snapshot (ZFS destroys a deferred one with its last clone)."""
        origin = (current.origin or {}).get('volume') if current is not None else None
        return [origin] if origin and any(a.verb == Verb.DELETE_VOLUME for a in actions) else []

    locks = [desired['name']] + ([desired['source_volume']] if desired['source_volume'] and not restore else [])
    before, actions, predicted = _converge(module, backend, read_and_plan, locks, reuse=not restore,
                                           more_locks=origin_of_a_deleted_clone)
    # a delete that went through leaves nothing to read back
    after = predicted if module.check_mode or not actions or predicted is None \
        else backend.read_volume(desired['name'])[0]
    return _result(module, 'volume', before, after, actions, connected)


def ensure_snapshot(module, backend):
    params = module.params
    desired = dict(params)
    validate_name(params['volume'], 'volume')
    validate_name(params['name'], 'snapshot')
    backend.validate_volume_name(params['volume'])
    backend.validate_snapshot_name(params['name'], params['volume'])
    connected = backend.connect(apply=not module.check_mode)

    def read_and_plan():
        volume, snapshots = backend.read_volume(params['volume'])
        before = next((s for s in snapshots if s.name == params['name']), None)
        settings = NO_SETTINGS
        if before is not None and params['state'] == 'present' and before.status == 'available':
            settings = Settings._make(backend.plan_settings(before))
        leftover = None
        if before is not None and params['state'] == 'absent':
            leftover = backend.predict_deleted_snapshot(before)
        actions, predicted = plan_snapshot(desired, volume, snapshots, backend.name, backend.deferred_delete,
                                           settings, leftover)
        if _creates(actions, Verb.CREATE_SNAPSHOT):
            predicted = backend.predict_snapshot(predicted, volume, snapshots)
        return before, actions, predicted

    before, actions, predicted = _converge(module, backend, read_and_plan, [params['volume']])
    after = predicted
    if actions and not module.check_mode and predicted is not None:
        after = next((s for s in backend.read_volume(params['volume'])[1] if s.name == params['name']), None)
    return _result(module, 'snapshot', before, after, actions, connected)


def ensure_backup(module, backend):
    params = module.params
    desired = dict(params)
    volume = validate_name(params['volume'], 'volume')
    if params['snapshot'] is not None:
        validate_name(params['snapshot'], 'snapshot')
    desired['name'] = validate_name(params['name'] if params['name'] is not None else params['snapshot'], 'backup')
    backend.validate_volume_name(volume)
    from ansible_collections.stratum.storage.plugins.module_utils._repository import (
        Repository, base_snapshot, check_source, source_of)
    repository = Repository(CommandRunner(module), params['repository'])
    repository.store.validate_snapshot_name(desired['name'], volume)
    connected = backend.connect(apply=not module.check_mode) + repository.connect(apply=not module.check_mode)
    if backend.uses_directory(repository.directory):
        raise InvalidInputError('The repository %s is the volume directory of the nfs backend itself; keep backups in '
                                'another directory.' % repository.directory)
    repository.source = backend

    def read_and_plan():
        record, snapshots = backend.read_volume(volume)
        if record is None and params['state'] == 'present':
            raise StorageError('Volume %s does not exist, so it cannot be backed up.' % volume)
        snapshot = next((s for s in snapshots if s.name == params['snapshot']), None)
        stored, backups, meta = repository.read(volume)
        if stored is not None and stored.status == 'error':
            raise ChainError('Repository %s: %s' % (repository.directory, stored.details.get('reason')))
        if stored is not None and params['state'] == 'present' and 'active_file' in stored.details:
            check_source(meta, source_of(backend, volume), volume, repository.directory)
        base = base_snapshot(backend, meta, snapshots, snapshot) if snapshot is not None else None
        identity = backend.snapshot_identity(snapshot) if snapshot is not None else None
        before = next((b for b in backups if b.name == desired['name']), None)
        actions, predicted = plan_backup(desired, snapshot, identity, backups, base, backend.name)
        if predicted is not None and predicted is not before:
            predicted.details['repository'] = repository.directory
        return before, actions, predicted

    before, actions, predicted = read_and_plan()
    if actions and not module.check_mode:
        with backend.lock([volume]), repository.lock([volume]):
            before, actions, predicted = read_and_plan()
            for action in actions:
                action.apply(repository)
        predicted = next((b for b in repository.read(volume)[1] if b.name == desired['name']), None)
    return _result(module, 'backup', before, predicted, actions, connected)


def backup_info(module, backend):
    volume = module.params.get('volume')
    if volume is not None:
        validate_name(volume, 'volume')
    from ansible_collections.stratum.storage.plugins.module_utils._repository import Repository
    repository = Repository(CommandRunner(module), module.params['repository'])
    repository.connect(apply=False)
    return {'changed': False, 'backups': [b.to_dict() for b in repository.list(volume)]}


def volume_info(module, backend):
    name = module.params.get('name')
    if name is not None:
        validate_name(name, 'volume')
    backend.connect(apply=False)
    return {'changed': False, 'volumes': [v.to_dict() for v in backend.list_volumes(name)]}


def snapshot_info(module, backend):
    volume = module.params.get('volume')
    if volume is not None:
        validate_name(volume, 'volume')
    backend.connect(apply=False)
    return {'changed': False, 'snapshots': [s.to_dict() for s in backend.list_snapshots(volume)]}


def replica(module, backend):
    from ansible_collections.stratum.storage.plugins.module_utils._replica import ensure_replica
    return ensure_replica(module, backend, CommandRunner(module), BACKENDS)


HANDLERS = {
    'volume': ensure_volume,
    'snapshot': ensure_snapshot,
    'volume_info': volume_info,
    'snapshot_info': snapshot_info,
    'backup': ensure_backup,
    'backup_info': backup_info,
    'replica': replica,
}


def run_module(module, kind):
    """Entry point of every module: pick the backend, run the handler, report."""
    runner = CommandRunner(module)
    try:
        backend_name = module.params['backend']
        for other in sorted(BACKENDS):
            if other != backend_name and module.params.get(other) is not None:
                raise InvalidInputError('Option %s configures backend %s, but this task selects backend=%s; remove %s '
                                        'or select backend=%s.' % (other, other, backend_name, other, other))
        backend = None
        if backend_name is not None:
            backend = BACKENDS[backend_name].backend(runner, module.params.get(backend_name) or {})
        result = HANDLERS[kind](module, backend)
    except StorageError as exc:
        module.fail_json(msg=exc.message, **exc.details)
    except OSError as exc:  # the backends turn their own into sentences; this is the last net
        error = os_error(exc, 'Accessing', exc.filename or '')
        module.fail_json(msg=error.message, **error.details)
    module.exit_json(**result)
