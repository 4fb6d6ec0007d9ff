# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the planner cases of planner_cases.yml: the planners called directly, with no backend and no module."""

from __future__ import annotations

import inspect
import os

import pytest
import yaml

from ansible_collections.stratum.storage.plugins.module_utils import _errors
from ansible_collections.stratum.storage.plugins.module_utils._backend import Action, Backend, Settings
from ansible_collections.stratum.storage.plugins.module_utils._planner import NO_SETTINGS, plan_snapshot, plan_volume
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume

with open(os.path.join(os.path.dirname(__file__), 'planner_cases.yml')) as _handle:
    CASES = yaml.safe_load(_handle)

VOLUME_DEFAULTS = dict(state='present', size=None, format=None, source_volume=None, source_snapshot=None, force=False)
SNAPSHOT_DEFAULTS = dict(state='present')
BACKEND = 'nfs'


def volume(data):
    return None if data is None else Volume(**dict(dict(backend=BACKEND), **data))


def snapshot(data):
    return None if data is None else Snapshot(**dict(dict(backend=BACKEND), **data))


def settings(data, build):
    if data is None:
        return NO_SETTINGS
    actions = [Action(a['verb'], a.get('description', a['verb']), **a['kwargs']) for a in data['actions']]
    return Settings(actions, build(data.get('predicted')))


def run_plan_volume(given):
    desired = dict(VOLUME_DEFAULTS, **given['desired'])
    return plan_volume(desired, volume(given.get('current')), [snapshot(s) for s in given.get('snapshots', [])],
                       volume(given.get('source')), snapshot(given.get('source_snapshot')), BACKEND,
                       given.get('unit', 512), settings(given.get('settings'), volume)), volume


def run_plan_snapshot(given):
    desired = dict(SNAPSHOT_DEFAULTS, **given['desired'])
    return plan_snapshot(desired, volume(given.get('volume')), [snapshot(s) for s in given.get('snapshots', [])],
                         BACKEND, given.get('deferred_delete', False), settings(given.get('settings'), snapshot),
                         snapshot(given.get('leftover'))), snapshot


PLANNERS = {'plan_volume': run_plan_volume, 'plan_snapshot': run_plan_snapshot}
PARAMS = [(planner, case) for planner in sorted(CASES) for case in CASES[planner]]


def check_action(action, expected):
    assert action.verb == expected['verb']
    assert action.kwargs == expected['kwargs']
    # the keyword arguments are exactly what the declared Backend method takes
    inspect.signature(getattr(Backend, action.verb)).bind(None, **action.kwargs)
    if 'description' in expected:
        assert action.description == expected['description']
    if 'checks' in expected:
        assert [record.name for record in action.checks] == expected['checks']


@pytest.mark.parametrize('planner, case', PARAMS, ids=['%s: %s' % (p, c['id']) for p, c in PARAMS])
def test_planner_case(planner, case):
    expected = case['output']
    if 'error' in expected:
        with pytest.raises(getattr(_errors, expected['error'])) as error:
            PLANNERS[planner](case['input'])
        assert type(error.value).__name__ == expected['error']
        assert error.value.message == expected['message']
        return
    (actions, predicted), build = PLANNERS[planner](case['input'])
    assert len(actions) == len(expected['actions']), actions
    for action, want in zip(actions, expected['actions']):
        check_action(action, want)
    want = build(expected['predicted'])
    assert (predicted.to_dict() if predicted is not None else None) == (want.to_dict() if want is not None else None)


def test_the_cases_cover_every_planner_and_outcome():
    assert sorted(CASES) == sorted(PLANNERS)
    for planner, cases in CASES.items():
        outcomes = set('error' if 'error' in c['output'] else 'noop' if not c['output']['actions'] else 'change'
                       for c in cases)
        assert outcomes == {'error', 'noop', 'change'}, planner
    ids = [c['id'] for cases in CASES.values() for c in cases]
    assert len(ids) == len(set(ids))


def test_the_planners_need_no_qemu_tools(request):
    """Pure tests run without qemu-img; only the tests that drive it ask for it (fixture qemu_tools)."""
    assert [name for name in request.fixturenames if 'qemu' in name] == []
