# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simultaneous runs of one change on LVM and ZFS: one run makes it, the others find it made.

Eight forked runs share one canned host whose state is a file: a change command
takes a while and fails, as ``zfs snapshot`` and ``lvcreate`` do, when its target
already exists. Without the host-local lock every run lists the state before any
of them changed it, so one run makes the change and the others fail.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _files
from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
from ansible_collections.stratum.storage.tests.unit.helpers import CannedHost, run_canned
from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_lvm_canned as lvm
from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs

COUNT = 8


class SharedState:
    """Rows in a JSON file; ``change`` is atomic and refuses a target that exists."""

    def __init__(self, path):
        self.path = path

    def reset(self, rows):
        with open(self.path, 'w') as handle:
            json.dump(rows, handle)

    def rows(self):
        with open(self.path) as handle:
            return json.load(handle)

    def change(self, key, row):
        time.sleep(0.3)  # a real change takes a while; every unlocked run has listed by now
        with open(self.path, 'r+') as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            rows = json.load(handle)
            if any(key(r) == key(row) for r in rows):
                return 1, '', 'already exists'
            rows.append(row)
            handle.seek(0)
            handle.truncate()
            json.dump(rows, handle)
        return 0, '', ''


def zfs_host(state):
    def answer(argv):
        if argv[1] == 'snapshot':
            return state.change(lambda r: r[0]['name'], zfs.row(argv[-1], 'snapshot', 32 << 20, 50))
        return zfs.zfs_host([tuple(r) for r in state.rows()]).answers['zfs'](argv)
    return CannedHost(zfs=answer)


def lvm_host(state):
    def lvcreate(argv):
        name = argv[argv.index('-n') + 1]
        return state.change(lambda r: r['lv_name'], lvm.volume_lv(name[len('volume-'):], 8 << 20))

    def lvs(argv):
        return lvm.lvs_host(state.rows()).answers['lvs'](argv)
    return CannedHost(lvs=lvs, lvcreate=lvcreate)


CASES = {
    'zfs snapshot': (lambda: [list(r) for r in zfs.base_rows()], zfs_host, snapshot,
                     dict(zfs.ZFS, volume='v', name='new')),
    'lvm volume': (lambda: [lvm.POOL], lvm_host, volume, dict(lvm.THICK, name='new', size='8M')),
}


def _run(case):
    _rows, make_host, module, args = CASES[case]
    result = run_canned(module, args, make_host(SharedState(os.environ['STRATUM_TEST_STATE'])))
    return bool(result.get('changed')), bool(result.get('failed')), result.get('msg')


@pytest.mark.parametrize('case', sorted(CASES))
def test_eight_simultaneous_runs_of_one_change(case, tmp_path, monkeypatch):
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    monkeypatch.setenv('STRATUM_TEST_STATE', str(tmp_path / 'state.json'))
    SharedState(str(tmp_path / 'state.json')).reset(CASES[case][0]())
    with multiprocessing.get_context('fork').Pool(COUNT) as pool:
        results = pool.map(_run, [case] * COUNT)
    assert sorted(results, reverse=True) == [(True, False, None)] + [(False, False, None)] * (COUNT - 1), results
    lock_dir = os.lstat(str(tmp_path / 'locks'))
    assert stat.S_IMODE(lock_dir.st_mode) == 0o700


def test_a_lock_directory_that_others_can_write_is_refused(tmp_path, monkeypatch):
    planted = tmp_path / 'locks'
    planted.mkdir()
    planted.chmod(0o777)
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(planted))
    host = zfs.zfs_host(zfs.base_rows())
    result = run_canned(snapshot, dict(zfs.ZFS, volume='v', name='new'), host)
    assert result['failed'] and 'only it can write' in result['msg'], result
    assert [c[1] for c in host.commands] == ['list']


def test_a_lock_directory_that_is_a_link_is_refused(tmp_path, monkeypatch):
    (tmp_path / 'elsewhere').mkdir(mode=0o700)
    os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / 'locks'))
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    host = zfs.zfs_host(zfs.base_rows())
    result = run_canned(snapshot, dict(zfs.ZFS, volume='v', name='new'), host)
    assert result['failed'] and 'only it can write' in result['msg'], result
    assert os.listdir(str(tmp_path / 'elsewhere')) == []


# -- turns: what lets a run skip its read under the lock -----------------------------------

def _hold_until_told(base, ready, go, release):
    stack = _files.host_locks('zfs:tank', ['a'], base=base)
    os.write(ready, b'x')
    os.read(go, 1)
    if release:
        stack.close()
    os._exit(0)  # without closing the stack the way a killed run leaves it


def _holder(base, release):
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    child = multiprocessing.get_context('fork').Process(target=_hold_until_told,
                                                        args=(base, ready_w, go_r, release))
    child.start()
    os.read(ready_r, 1)
    return child, go_w


def test_marks_change_with_each_taking_and_letting_go(tmp_path):
    base = str(tmp_path / 'locks')
    first = _files.host_lock_turns('zfs:tank', ['b', 'a'], base=base)
    assert first == ('', '')
    assert not os.path.exists(base), 'reading the marks made the lock directory'
    with _files.host_locks('zfs:tank', ['a', 'b'], base=base) as taken:
        assert taken == first
        assert _files.host_lock_turns('zfs:tank', ['a'], base=base) is None, 'read a lock this process holds'
    after = _files.host_lock_turns('zfs:tank', ['a', 'b'], base=base)
    assert after[0] != '' and after[1] != '' and after[0] != after[1]
    assert _files.host_lock_turns('zfs:tank', ['a', 'b'], base=base) == after, 'reading changed a mark'
    with _files.host_locks('zfs:tank', ['a'], base=base) as taken:
        assert taken == after[:1]
    again = _files.host_lock_turns('zfs:tank', ['a', 'b'], base=base)
    assert again[0] != after[0] and again[1] == after[1]
    with pytest.raises(RuntimeError):
        with _files.host_locks('zfs:tank', ['a'], base=base):
            raise RuntimeError('a failed change')
    assert _files.host_lock_turns('zfs:tank', ['a', 'b'], base=base)[0] != again[0]
    assert _files.host_lock_turns('lvm:tank', ['a'], base=base) == ('',), 'another scope shares a mark'


def test_marks_unknown_while_another_run_holds_the_lock(tmp_path):
    base = str(tmp_path / 'locks')
    child, go = _holder(base, release=True)
    try:
        assert _files.host_lock_turns('zfs:tank', ['a'], base=base) is None
    finally:
        os.write(go, b'x')
        child.join(10)
    assert len(_files.host_lock_turns('zfs:tank', ['a'], base=base)[0]) == _files.TURN_WIDTH


def test_a_run_killed_holding_the_lock_has_changed_the_mark(tmp_path):
    base = str(tmp_path / 'locks')
    before = _files.host_lock_turns('zfs:tank', ['a'], base=base)
    child, go = _holder(base, release=False)
    os.write(go, b'x')
    child.join(10)
    assert _files.host_lock_turns('zfs:tank', ['a'], base=base) != before


def test_a_mark_is_written_over_the_old_one_never_emptied_first(tmp_path, monkeypatch):
    """A run killed between emptying and writing would leave '' - the mark of a lock never taken."""
    base = str(tmp_path / 'locks')
    with _files.host_locks('zfs:tank', ['a'], base=base):
        pass
    calls = []
    monkeypatch.setattr(_files.os, 'ftruncate', lambda *a: calls.append(a))
    with _files.host_locks('zfs:tank', ['a'], base=base):
        pass
    assert calls == []
    path = _files._host_lock_path(base, 'zfs:tank', 'a')
    assert os.path.getsize(path) == _files.TURN_WIDTH


def test_turns_in_a_lock_directory_others_can_write_are_not_trusted(tmp_path):
    planted = tmp_path / 'locks'
    planted.mkdir()
    planted.chmod(0o777)
    assert _files.host_lock_turns('zfs:tank', ['a'], base=str(planted)) is None


def _take_lock_in_another_process(base):
    pid = os.fork()
    if pid == 0:
        _files.host_locks('zfs:%s' % zfs.PARENT, ['v'], base=base).close()
        os._exit(0)
    os.waitpid(pid, 0)


@pytest.mark.parametrize('between', [False, True], ids=['no-run-between', 'a-run-took-the-lock-between'])
def test_the_read_under_the_lock_is_left_out_only_when_no_run_took_the_lock(between, tmp_path, monkeypatch):
    base = str(tmp_path / 'locks')
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', base)
    listed = []

    def snapshot_made(argv):
        return 0, '', ''

    host = zfs.zfs_host(zfs.base_rows(), snapshot=snapshot_made)
    plain_list = host.answers['zfs']

    def zfs_command(argv):
        if argv[1] == 'list':
            listed.append(argv)
            if between and len(listed) == 1:
                _take_lock_in_another_process(base)
        return plain_list(argv)

    host.answers['zfs'] = zfs_command
    result = run_canned(snapshot, dict(zfs.ZFS, volume='v', name='new'), host)
    assert not result['failed'], result
    expected = ['list', 'list', 'snapshot', 'list'] if between else ['list', 'snapshot', 'list']
    assert [c[1] for c in host.commands] == expected


@pytest.mark.parametrize('deleted, origin_locked', [('c', True), ('v2', False)])
def test_deleting_a_clone_also_locks_its_origin_volume(deleted, origin_locked, tmp_path, monkeypatch):
    """The clone's last destroy also ends its origin's deferred snapshot, which a run on the origin may plan on."""
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    rows = zfs.base_rows()
    rows[1][0].update(clones=zfs.PARENT + '/c', defer_destroy='on')
    rows += [zfs.row(zfs.PARENT + '/c', 'volume', 32 << 20, 13, origin=zfs.PARENT + '/v@s1'),
             zfs.row(zfs.PARENT + '/v2', 'volume', 32 << 20, 14)]
    held = {}

    def destroy(argv):
        # None: this process holds the lock; '' or a mark: nobody does
        held.update((name, _files.host_lock_turns('zfs:%s' % zfs.PARENT, [name]) is None) for name in ('v', deleted))
        return 0, '', ''
    host = zfs.zfs_host(rows, destroy=destroy)
    result = run_canned(volume, dict(zfs.ZFS, name=deleted, state='absent'), host)
    assert not result['failed'] and result['changed'], result
    assert held == {'v': origin_locked, deleted: True}
    # the origin's lock makes the run read the clone again under the locks, and the origin (a read of its
    # own: a receive cut on it is finished first)
    listed = [c[-1] if c[1] == 'list' else c[1] for c in host.commands]
    clone = zfs.PARENT + '/' + deleted
    assert listed == ([clone, clone, zfs.PARENT + '/v', 'destroy'] if origin_locked else [clone, 'destroy'])
