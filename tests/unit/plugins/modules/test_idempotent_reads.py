# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backend calls a run makes, described as data.

A recording backend stands in for storage: each case gives the module
arguments, the check flag and the state the backend reports, then what must
hold whatever the manager's internal order: check mode and no-op runs only
read (and take no lock), how many times the storage is read, and in a real
change which verbs are applied, all of them under the lock after a read under it.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _manager
from ansible_collections.stratum.storage.plugins.module_utils._backend import Action, Backend, Settings, Verb
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS, Registered
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume
from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
from ansible_collections.stratum.storage.tests.unit.helpers import run_module

#: calls that read storage; their count is what a case pins
STORAGE_READS = {'read_volume', 'list_volumes', 'list_snapshots'}
#: every verb that changes storage
WRITES = set(verb.value for verb in Verb)

VOL = Volume(name='v', backend='nfs', status='available', size=1 << 20,
             details={'format': 'raw', 'active_file': 'volume-v.s1', 'active_format': 'qcow2'})
INACTIVE = VOL.replace(details=dict(VOL.details, active=False))
SNAP = Snapshot(name='s1', volume='v', backend='nfs', status='available', size=1 << 20)


class RecordingBackend(Backend):
    """Answers reads from canned state and records every call with whether the lock was held."""

    name = 'nfs'
    formats = ('raw', 'qcow2')

    def __init__(self, runner, config, volumes=(), snapshots=(), turns=(None, None)):
        super().__init__(runner, config)
        self.calls = []
        self.held = False
        self.volumes = list(volumes)
        self.snapshots = list(snapshots)
        # what lock_turns reads before the first read, and what the lock finds on taking
        self.turns_before, self.turns_taken = turns

    def _record(self, verb):
        self.calls.append((verb, self.held))

    # -- reads and queries -----------------------------------------------------------

    def connect(self, apply):
        self._record('connect')
        return []

    @contextmanager
    def lock(self, volumes):
        self._record('lock')
        self.held = True
        try:
            yield self.turns_taken
        finally:
            self.held = False

    def lock_turns(self, volumes):
        self._record('lock_turns')
        return self.turns_before

    def settle(self, volume, fresh=True, apply=True):
        self._record('settle')

    def forget(self):
        self._record('forget')

    def allocation_unit(self, volume=None):
        self._record('allocation_unit')
        return 512

    def list_volumes(self, name=None):
        self._record('list_volumes')
        return [v for v in self.volumes if name in (None, v.name)]

    def list_snapshots(self, volume=None):
        self._record('list_snapshots')
        return [s for s in self.snapshots if volume in (None, s.volume)]

    def read_volume(self, name):
        self._record('read_volume')
        found = next((v for v in self.volumes if v.name == name), None)
        return found, [s for s in self.snapshots if s.volume == name] if found else []

    def validate_volume_name(self, name):
        self._record('validate_volume_name')

    def validate_snapshot_name(self, name, volume=None):
        self._record('validate_snapshot_name')

    def plan_settings(self, record):
        self._record('plan_settings')
        if record.details.get('active') is False:
            return Settings([Action(Verb.ACTIVATE, 'activate %s' % record.name, volume=record.name)],
                            record.replace(details=dict(record.details, active=True)))
        return super().plan_settings(record)

    def predict_deleted_snapshot(self, snapshot):
        self._record('predict_deleted_snapshot')
        return super().predict_deleted_snapshot(snapshot)

    def predict_volume(self, predicted):
        self._record('predict_volume')
        return super().predict_volume(predicted)

    def predict_snapshot(self, predicted, volume, snapshots):
        self._record('predict_snapshot')
        return super().predict_snapshot(predicted, volume, snapshots)

    def check_rewritable(self, volume, verb=None):
        self._record('check_rewritable')

    # -- writes ---------------------------------------------------------------------------

    def create_volume(self, name, size, fmt):
        self._record('create_volume')

    def clone_volume(self, name, source, snapshot, size, fmt):
        self._record('clone_volume')

    def extend_volume(self, name, size):
        self._record('extend_volume')

    def delete_volume(self, name):
        self._record('delete_volume')

    def create_snapshot(self, volume, name, temporary=False):
        self._record('create_snapshot')

    def restore_volume(self, name, image, size, fmt):
        self._record('restore_volume')

    def location(self):
        self._record('location')
        return '/srv/volumes'

    def uses_directory(self, directory):
        self._record('uses_directory')
        return False

    def snapshot_identity(self, snapshot):
        self._record('snapshot_identity')
        return None

    def open_snapshot(self, snapshot):
        self._record('open_snapshot')
        raise AssertionError('no case reads snapshot data')

    def changed_ranges(self, base, snapshot):
        self._record('changed_ranges')
        return None

    def delete_snapshot(self, volume, name):
        self._record('delete_snapshot')

    def activate(self, volume, snapshot=None):
        self._record('activate')

    def set_properties(self, name, properties):
        self._record('set_properties')


CASES = [
    # id, module, args, check, volumes, snapshots, storage reads, verbs applied
    ('snapshot-present-noop', snapshot, dict(volume='v', name='s1'), False, [VOL], [SNAP], 1, []),
    ('snapshot-present-noop-check', snapshot, dict(volume='v', name='s1'), True, [VOL], [SNAP], 1, []),
    ('snapshot-absent-noop', snapshot, dict(volume='v', name='s9', state='absent'), False, [VOL], [SNAP], 1, []),
    ('volume-present-noop', volume, dict(name='v', size='1M'), False, [VOL], [SNAP], 1, []),
    ('volume-present-noop-check', volume, dict(name='v', size='1M'), True, [VOL], [SNAP], 1, []),
    ('volume-absent-noop', volume, dict(name='n', state='absent'), False, [VOL], [], 1, []),
    ('snapshot-create-check', snapshot, dict(volume='v', name='s2'), True, [VOL], [SNAP], 1, []),
    ('snapshot-create', snapshot, dict(volume='v', name='s2'), False, [VOL], [SNAP], 3, ['create_snapshot']),
    ('snapshot-delete-check', snapshot, dict(volume='v', name='s1', state='absent'), True, [VOL], [SNAP], 1, []),
    # a delete reads before and under the lock, and is not read back: nothing is left to list
    ('snapshot-delete', snapshot, dict(volume='v', name='s1', state='absent'), False, [VOL], [SNAP], 2,
     ['delete_snapshot']),
    ('volume-grow-check', volume, dict(name='v', size='2M'), True, [VOL], [SNAP], 1, []),
    ('volume-grow', volume, dict(name='v', size='2M'), False, [VOL], [SNAP], 3, ['extend_volume']),
    ('volume-create-check', volume, dict(name='n', size='2M'), True, [VOL], [], 1, []),
    ('volume-create', volume, dict(name='n', size='2M'), False, [], [], 3, ['create_volume']),
    ('volume-clone-check', volume, dict(name='n', source_volume='v'), True, [VOL], [], 2, []),
    ('volume-clone', volume, dict(name='n', source_volume='v'), False, [VOL], [], 5, ['clone_volume']),
    ('volume-delete', volume, dict(name='v', state='absent', force=True), False, [VOL], [SNAP], 2,
     ['delete_volume']),
    ('volume-activate-check', volume, dict(name='v'), True, [INACTIVE], [], 1, []),
    ('volume-activate', volume, dict(name='v'), False, [INACTIVE], [], 3, ['activate']),
]


def run_case(module, args, check, volumes, snapshots, turns=(None, None)):
    backends = []

    def factory(runner, config):
        backends.append(RecordingBackend(runner, config, volumes, snapshots, turns))
        return backends[-1]

    with mock.patch.dict(_manager.BACKENDS, {'nfs': Registered(lambda: factory, BACKENDS['nfs'].option)}):
        result = run_module(module, dict(args, backend='nfs', nfs={'path': '/nonexistent'}), check=check)
    assert not result['failed'], result
    assert len(backends) == 1
    return result, backends[0].calls


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_backend_calls(case):
    _id, module, args, check, volumes, snapshots, reads, writes = case
    result, calls = run_case(module, args, check, volumes, snapshots)
    verbs = [verb for verb, _held in calls]
    assert [v for v in verbs if v in WRITES] == writes
    assert verbs.count('read_volume') + verbs.count('list_volumes') + verbs.count('list_snapshots') == reads, verbs
    assert result['changed'] == bool(writes or (check and 'noop' not in _id))
    if not writes:
        # check mode and no-op runs: reads only, and no lock (a lock file is a write on NFS)
        assert 'lock' not in verbs, verbs
        return
    assert verbs.count('lock') == 1
    locked = [verb for verb, held in calls if held]
    first_write = next(i for i, verb in enumerate(locked) if verb in WRITES)
    assert 'read_volume' in locked[:first_write], 'the change was not planned from a read under the lock'
    assert all(held for verb, held in calls if verb in WRITES), 'a change ran outside the lock'


#: changes that read before, under the lock and after, each with the reads it makes when the
#: lock shows that no run held it since the first read (that read then stands for the second)
TURN_CASES = [
    ('snapshot-create', snapshot, dict(volume='v', name='s2'), [VOL], [SNAP], 2, ['create_snapshot']),
    ('volume-create', volume, dict(name='n', size='2M'), [], [], 2, ['create_volume']),
    ('volume-grow', volume, dict(name='v', size='2M'), [VOL], [SNAP], 2, ['extend_volume']),
    ('volume-clone', volume, dict(name='n', source_volume='v'), [VOL], [], 3, ['clone_volume']),
    ('volume-delete', volume, dict(name='v', state='absent', force=True), [VOL], [SNAP], 1, ['delete_volume']),
]


@pytest.mark.parametrize('case', TURN_CASES, ids=[c[0] for c in TURN_CASES])
def test_read_under_the_lock_left_out_when_no_run_held_it(case):
    _id, module, args, volumes, snapshots, reads, writes = case
    result, calls = run_case(module, args, False, volumes, snapshots, turns=(('m4', 'm0'), ('m4', 'm0')))
    verbs = [verb for verb, _held in calls]
    assert [v for v in verbs if v in WRITES] == writes
    assert verbs.index('lock_turns') < verbs.index('read_volume'), 'the turns were read after the storage'
    assert 'forget' not in verbs, 'the first read stands for the read under the lock'
    assert verbs.count('read_volume') + verbs.count('list_volumes') + verbs.count('list_snapshots') == reads, verbs
    assert result['changed']


@pytest.mark.parametrize('turns', [(('m4', 'm0'), ('m6', 'm0')), (('m4', 'm0'), ('m4', 'm2')), (None, ('m4', 'm0')),
                                   (('m4', 'm0'), None)],
                         ids=['taken-since', 'second-lock-taken-since', 'held-at-first-read', 'lock-without-turns'])
@pytest.mark.parametrize('case', TURN_CASES, ids=[c[0] for c in TURN_CASES])
def test_read_again_under_the_lock_when_a_run_may_have_held_it(case, turns):
    _id, module, args, volumes, snapshots, reads, writes = case
    result, calls = run_case(module, args, False, volumes, snapshots, turns=turns)
    verbs = [verb for verb, _held in calls]
    assert [v for v in verbs if v in WRITES] == writes
    locked = [verb for verb, held in calls if held]
    first_write = next(i for i, verb in enumerate(locked) if verb in WRITES)
    assert 'read_volume' in locked[:first_write], 'the change was not planned from a read under the lock'
    assert verbs.count('read_volume') + verbs.count('list_volumes') + verbs.count('list_snapshots') == reads + \
        (2 if _id == 'volume-clone' else 1), verbs
    # what the first read kept is dropped before the read under the lock
    assert locked.index('forget') < locked.index('read_volume'), locked


def test_check_mode_reads_no_turns():
    _result, calls = run_case(volume, dict(name='n', size='2M'), True, [], [], turns=(('m4', 'm0'), ('m4', 'm0')))
    assert 'lock_turns' not in [verb for verb, _held in calls]


def test_recording_backend_records_every_declared_method():
    """A call the manager makes that the recording backend does not record would hide a read or a write."""
    declared = set(name for name, value in vars(Backend).items() if callable(value) and not name.startswith('_'))
    assert declared - set(vars(RecordingBackend)) == set()
    assert WRITES <= declared


@pytest.mark.parametrize('args, reuse', [
    (dict(name='n', size='2M'), True),
    (dict(name='n', source_volume='v'), True),
    (dict(name='n', source_volume='v', source_backup='b1'), False),
], ids=['create', 'clone', 'restore'])
def test_a_restore_always_reads_again_under_the_lock(args, reuse, monkeypatch, tmp_path):
    """A restore plans from the backup repository too, which the volume's lock does not cover."""
    from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import repository
    seen = []

    def converge(module, backend, read_and_plan, lock_names, reuse=True, more_locks=None):
        seen.append(reuse)
        return None, [], None
    monkeypatch.setattr(_manager, '_converge', converge)
    if 'source_backup' in args:
        args = dict(args, repository=repository(str(tmp_path)))
    run_case(volume, args, False, [VOL], [], turns=(('m4',), ('m4',)))
    assert seen == [reuse]
