# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager: runs a module around the pure planners of ``_planner``.

One run reads the current state, plans the change (a pure function), and in a
real run takes the lock, reads and plans again under it, applies the actions in
order and returns the record read afterwards. Because the plan is computed
before anything is applied, check mode reports exactly what a real run would
do, and a run whose plan is empty issues read commands only. The calls it
makes on a backend, and their order, are listed on ``Backend``.
"""

from __future__ import annotations

from ansible_collections.stratum.storage.plugins.module_utils._backend import Settings, Verb
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._files import os_error
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name
from ansible_collections.stratum.storage.plugins.module_utils._planner import NO_SETTINGS, plan_snapshot, plan_volume
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandRunner
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size

__all__ = ['BACKENDS', 'run_module']


def _creates(actions, *verbs):
    """True when the plan ends by creating the record it predicts."""
    return bool(actions) and actions[-1].verb in verbs


# -- applying -----------------------------------------------------------------------------

def _converge(module, backend, read_and_plan, lock_names):
    """Plan from a fresh read; in a real run, re-read and re-plan under the lock, then apply."""
    before, actions, predicted = read_and_plan()
    if actions and not module.check_mode:
        with backend.lock(lock_names):
            before, actions, predicted = read_and_plan()
            _preflight(backend, actions)
            for action in actions:
                action.apply(backend)
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
        settings = NO_SETTINGS
        if current is not None and desired['state'] == 'present' and current.status != 'error':
            settings = Settings._make(backend.plan_settings(current))
        actions, predicted = plan_volume(desired, current, snapshots, source, source_snapshot, backend.name,
                                         backend.allocation_unit(current or source), settings)
        if _creates(actions, Verb.CREATE_VOLUME, Verb.CLONE_VOLUME):
            predicted = backend.predict_volume(predicted)
        return current, actions, predicted

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
        backend = BACKENDS[backend_name].backend(runner, module.params.get(backend_name) or {})
        result = HANDLERS[kind](module, backend)
    except StorageError as exc:
        module.fail_json(msg=exc.message, **exc.details)
    except OSError as exc:  # the backends turn their own into sentences; this is the last net
        error = os_error(exc, 'Accessing', exc.filename or '')
        module.fail_json(msg=error.message, **error.details)
    module.exit_json(**result)
