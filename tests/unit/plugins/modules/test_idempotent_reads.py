# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backend calls a run makes, described as data.

A recording backend stands in for storage: each case gives the module
arguments, the check flag, the state the backend reports, and the exact calls
expected. Read verbs are listing and probing; anything else writes.
"""

from __future__ import annotations

from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _manager
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume
from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
from ansible_collections.stratum.storage.tests.unit.helpers import run_module

READ_VERBS = {'connect', 'allocation_unit', 'read_volume', 'list_volumes', 'list_snapshots',
              'validate_volume_name', 'validate_snapshot_name', 'plan_settings', 'predict_deleted_snapshot',
              'check_rewritable', 'lock'}

VOL = Volume(name='v', backend='nfs', status='available', size=1 << 20,
             details={'format': 'raw', 'active_file': 'volume-v.s1', 'active_format': 'qcow2'})
SNAP = Snapshot(name='s1', volume='v', backend='nfs', status='available', size=1 << 20)


class RecordingBackend:
    """Answers reads from canned state and records every call."""

    name = 'nfs'
    formats = ('raw', 'qcow2')
    deferred_delete = False

    def __init__(self, runner, config, volumes=(), snapshots=()):
        self.calls = []
        self.volumes = list(volumes)
        self.snapshots = list(snapshots)

    def __getattr__(self, verb):
        def call(*args, **kwargs):
            self.calls.append(verb)
            if verb == 'connect':
                return []
            if verb == 'allocation_unit':
                return 512
            if verb == 'read_volume':
                found = next((v for v in self.volumes if v.name == args[0]), None)
                return found, [s for s in self.snapshots if s.volume == args[0]] if found else []
            if verb == 'plan_settings':
                return [], args[0]
            if verb == 'predict_deleted_snapshot':
                return None
            if verb == 'lock':
                return mock.MagicMock()
            return None
        return call


CASES = [
    # id, module, args, check, volumes, snapshots, expected calls
    ('snapshot-present-noop', snapshot, dict(volume='v', name='s1'), False, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume', 'plan_settings']),
    ('snapshot-present-noop-check', snapshot, dict(volume='v', name='s1'), True, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume', 'plan_settings']),
    ('snapshot-absent-noop', snapshot, dict(volume='v', name='s9', state='absent'), False, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume']),
    ('volume-present-noop', volume, dict(name='v', size='1M'), False, [VOL], [SNAP],
     ['validate_volume_name', 'connect', 'read_volume', 'plan_settings', 'allocation_unit']),
    ('snapshot-create-check', snapshot, dict(volume='v', name='s2'), True, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume', 'check_rewritable']),
    ('snapshot-create', snapshot, dict(volume='v', name='s2'), False, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume', 'lock', 'read_volume',
      'check_rewritable', 'create_snapshot', 'read_volume']),
    ('snapshot-delete-check', snapshot, dict(volume='v', name='s1', state='absent'), True, [VOL], [SNAP],
     ['validate_volume_name', 'validate_snapshot_name', 'connect', 'read_volume', 'predict_deleted_snapshot',
      'check_rewritable']),
    ('volume-grow-check', volume, dict(name='v', size='2M'), True, [VOL], [SNAP],
     ['validate_volume_name', 'connect', 'read_volume', 'plan_settings', 'allocation_unit', 'check_rewritable']),
    ('volume-create-check', volume, dict(name='n', size='2M'), True, [VOL], [],
     ['validate_volume_name', 'connect', 'read_volume', 'allocation_unit']),
    ('volume-create', volume, dict(name='n', size='2M'), False, [], [],
     ['validate_volume_name', 'connect', 'read_volume', 'allocation_unit', 'lock', 'read_volume', 'allocation_unit',
      'create_volume', 'read_volume']),
]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_backend_calls(case):
    _id, module, args, check, volumes, snapshots, expected = case
    backends = []

    def factory(runner, config):
        backends.append(RecordingBackend(runner, config, volumes, snapshots))
        return backends[0]

    with mock.patch.dict(_manager.BACKENDS, {'nfs': factory}):
        result = run_module(module, dict(args, backend='nfs', nfs={'path': '/nonexistent'}), check=check)
    assert not result['failed'], result
    assert backends[0].calls == expected
    if check or 'noop' in _id:
        assert set(backends[0].calls) <= READ_VERBS
    assert result['changed'] == ('noop' not in _id)
