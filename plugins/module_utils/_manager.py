# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager: read current state, plan the change as a pure function, then apply.

Because the plan is computed before anything is applied, check mode reports
exactly what a real run would do, and a run whose plan is empty issues read
commands only.
"""

from __future__ import annotations

from ansible_collections.stratum.storage.plugins.module_utils._backend import Action
from ansible_collections.stratum.storage.plugins.module_utils._errors import (
    ChainError, InvalidInputError, StorageError)
from ansible_collections.stratum.storage.plugins.module_utils._files import os_error
from ansible_collections.stratum.storage.plugins.module_utils._lvm import LvmBackend
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name
from ansible_collections.stratum.storage.plugins.module_utils._nfs import NfsBackend
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandRunner
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size, round_up
from ansible_collections.stratum.storage.plugins.module_utils._zfs import ZfsBackend

__all__ = ['Action', 'BACKENDS', 'plan_volume', 'plan_snapshot', 'run_module']

BACKENDS = dict((cls.name, cls) for cls in (LvmBackend, NfsBackend, ZfsBackend))
DEFAULT_FORMAT = 'raw'


# -- pure planning ------------------------------------------------------------------------

def plan_volume(desired, current, snapshots, source, source_snapshot, backend, unit, settings=((), None)):
    """Return ``(actions, predicted)`` for the ``volume`` module.

    ``desired`` holds validated parameters (``size`` in bytes or None);
    ``current``, ``source`` and ``source_snapshot`` are records or None;
    ``settings`` is what ``Backend.plan_settings`` gave for ``current``.
    """
    name = desired['name']
    if desired['state'] == 'absent':
        if current is None:
            return [], None
        if snapshots and not desired['force']:
            raise StorageError('Volume %s has %d snapshot(s) (%s); delete them first, or set force=true to delete '
                               'them with the volume.' % (name, len(snapshots), ', '.join(s.name for s in snapshots)))
        return [Action('delete_volume', 'delete volume %s%s' % (name, ' and its snapshots' if snapshots else ''),
                       rewrites=[current], name=name)], None

    size = round_up(desired['size'], unit) if desired['size'] is not None else None
    if current is None:
        fmt = desired['format'] or DEFAULT_FORMAT
        if desired['source_volume']:
            return _plan_clone(desired, size, fmt, source, source_snapshot, backend, unit)
        if size is None:
            raise InvalidInputError('Volume %s does not exist and no size was given to create it.' % name)
        predicted = Volume(name=name, backend=backend, status='available', size=size, details={'format': fmt})
        return [Action('create_volume', 'create %s volume %s of %d bytes' % (fmt, name, size),
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
    actions, predicted = list(settings[0]), settings[1] or current
    if size is None:
        return actions, predicted
    have = round_up(current.size, unit)
    if size < have:
        raise InvalidInputError('Volume %s is %d bytes; shrinking it to %d bytes is refused.' % (name, have, size))
    if size == have:
        return actions, predicted
    return actions + [Action('extend_volume', 'grow volume %s from %d to %d bytes' % (name, have, size),
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
    return [Action('clone_volume', 'clone %s into new %s volume %s of %d bytes'
                   % (_label(source_name, snapshot_name), fmt, name, size),
                   rewrites=[], reads=[source], name=name, source=source_name, snapshot=snapshot_name,
                   size=size, fmt=fmt)], predicted


def _label(volume, snapshot):
    return 'snapshot %s of volume %s' % (snapshot, volume) if snapshot else 'volume %s' % volume


def _completed(backend, hook, actions, predicted, *args):
    """A new record as the backend predicts it in full (its ``hook``, when it has one), else ``predicted``.

    Only what creation alone can know (``created``) stays null.
    """
    complete = getattr(type(backend), hook, None)
    if complete is None or not actions or actions[-1].verb not in ('create_volume', 'clone_volume', 'create_snapshot'):
        return predicted
    return complete(backend, predicted, *args)


def plan_snapshot(desired, volume, snapshots, backend, deferred_delete=False, settings=((), None), leftover=None):
    """Return ``(actions, predicted)`` for the ``snapshot`` module.

    With ``deferred_delete`` a snapshot in ``pending_delete`` counts as deleted:
    the storage system removes it once nothing depends on it. ``settings`` is
    what ``Backend.plan_settings`` gave for the existing snapshot; ``leftover``
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
        return [Action('delete_snapshot', 'delete snapshot %s of volume %s' % (name, volume_name),
                       rewrites=[volume], volume=volume_name, name=name)], leftover
    if volume is None:
        raise StorageError('Volume %s does not exist, so snapshot %s cannot be taken.' % (volume_name, name))
    if existing is not None:
        if existing.status == 'pending_delete':
            raise StorageError('Snapshot %s of volume %s is being deleted; finish that with state=absent first.'
                               % (name, volume_name))
        return list(settings[0]), settings[1] or existing
    predicted = Snapshot(name=name, volume=volume_name, backend=backend, status='available', size=volume.size,
                         parent=snapshots[-1].name if snapshots else None)
    return [Action('create_snapshot', 'take snapshot %s of volume %s' % (name, volume_name),
                   rewrites=[volume], volume=volume_name, name=name)], predicted


# -- applying -----------------------------------------------------------------------------

def _converge(module, backend, read_and_plan, lock_names):
    """Plan from a fresh read; in a real run, re-read and re-plan under the lock, then apply."""
    before, actions, predicted = read_and_plan()
    if actions and not module.check_mode:
        with backend.lock(lock_names):
            before, actions, predicted = read_and_plan()
            _preflight(backend, actions)
            for action in actions:
                getattr(backend, action.verb)(**action.kwargs)
    elif actions:
        _preflight(backend, actions)
    return before, actions, predicted


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
    if params['source_volume'] is not None:
        validate_name(params['source_volume'], 'source volume')
        if params['source_volume'] == desired['name']:
            raise InvalidInputError('Volume %s cannot be cloned from itself.' % desired['name'])
    if params['source_snapshot'] is not None:
        validate_name(params['source_snapshot'], 'source snapshot')
    backend.validate_volume_name(desired['name'])
    if params['format'] and params['format'] not in backend.formats:
        raise InvalidInputError('The %s backend stores volumes in format %s only, not %s.'
                                % (backend.name, ' or '.join(backend.formats), params['format']))
    connected = backend.connect(apply=not module.check_mode)

    def read_and_plan():
        current, snapshots = backend.read_volume(desired['name'])
        source = source_snapshot = None
        if current is None and desired['source_volume'] and desired['state'] == 'present':
            source, source_snapshots = backend.read_volume(desired['source_volume'])
            source_snapshot = next((s for s in source_snapshots if s.name == desired['source_snapshot']), None)
        settings = ((), None)
        if current is not None and desired['state'] == 'present' and current.status != 'error':
            settings = backend.plan_settings(current)
        actions, predicted = plan_volume(desired, current, snapshots, source, source_snapshot, backend.name,
                                         backend.allocation_unit(current or source), settings)
        return current, actions, _completed(backend, 'predict_volume', actions, predicted)

    locks = [desired['name']] + ([desired['source_volume']] if desired['source_volume'] else [])
    before, actions, predicted = _converge(module, backend, read_and_plan, locks)
    after = predicted if module.check_mode or not actions else backend.read_volume(desired['name'])[0]
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
        settings = ((), None)
        if before is not None and params['state'] == 'present' and before.status == 'available':
            settings = backend.plan_settings(before)
        leftover = None
        if before is not None and params['state'] == 'absent':
            leftover = backend.predict_deleted_snapshot(before)
        actions, predicted = plan_snapshot(desired, volume, snapshots, backend.name, backend.deferred_delete,
                                           settings, leftover)
        return before, actions, _completed(backend, 'predict_snapshot', actions, predicted, volume, snapshots)

    before, actions, predicted = _converge(module, backend, read_and_plan, [params['volume']])
    after = predicted
    if actions and not module.check_mode:
        after = next((s for s in backend.read_volume(params['volume'])[1] if s.name == params['name']), None)
    return _result(module, 'snapshot', before, after, actions, connected)


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


HANDLERS = {
    'volume': ensure_volume,
    'snapshot': ensure_snapshot,
    'volume_info': volume_info,
    'snapshot_info': snapshot_info,
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
        backend = BACKENDS[backend_name](runner, module.params.get(backend_name) or {})
        result = HANDLERS[kind](module, backend)
    except StorageError as exc:
        module.fail_json(msg=exc.message, **exc.details)
    except OSError as exc:  # the backends turn their own into sentences; this is the last net
        error = os_error(exc, 'Accessing', exc.filename or '')
        module.fail_json(msg=error.message, **error.details)
    module.exit_json(**result)
