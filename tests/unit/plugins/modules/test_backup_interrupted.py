# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup killed with SIGKILL half-way: listed as creating, the earlier backups intact, finished or discarded next.

The backup runs in a forked child. To kill it at a chosen point and not by
luck, the child (only the child) stalls there: after the first write of the copy,
or in the snapshot that publishes the backup, after the backup was recorded as
the repository's content. The parent waits until the repository's metadata
file shows the backup as ``creating`` and the child has reached that point,
then kills it with SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _nbd, _nfs
from ansible_collections.stratum.storage.plugins.modules import backup, backup_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, read_info, run_module, tree_state)
from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import (
    listed, repository, repository_meta, restored_digest, run_backup, stored_digest)

STALL = 600
POLL_TIMEOUT = 60


def ok(result):
    assert not result['failed'], result
    return result


# -- the child --------------------------------------------------------------------------------


def _stall(marker):
    with open(marker, 'w'):
        pass
    time.sleep(STALL)


def _child(args, marker, point, nbd_tmp):
    """Runs in the forked child: make it stall at ``point``, then run the backup module."""
    tempfile.tempdir = nbd_tmp  # qemu-nbd's socket directories, left behind by the kill
    if point == 'copy':
        real_write = _nbd.NbdExport.write

        def write(self, offset, data):  # only the repository volume is written
            real_write(self, offset, data)
            _stall(marker)
        _nbd.NbdExport.write = write
    else:
        # create_snapshot of the repository volume made the overlay and is about to publish it
        def write_info(self, volume_name, info):
            _stall(marker)
        _nfs.NfsBackend._write_info = write_info
    run_module(backup, args)
    os._exit(3)  # the backup was expected to be killed before it ended


def _children(pid):
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _running(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


def _creating(repo, volume_name):
    try:
        meta = repository_meta(repo, volume_name)
    except (OSError, ValueError):
        return []
    return [name for name, entry in (meta.get('snapshots') or {}).items()
            if isinstance(entry, dict) and entry.get('status') == 'creating']


def killed_backup(source, repo, tmp_path, snap, name, point, volume_name='v'):
    """Run the backup in a child, SIGKILL it once it is listed as creating and stalls at ``point``."""
    marker = str(tmp_path / ('stalled-%s' % name))
    nbd_tmp = tmp_path / 'nbd-tmp'
    nbd_tmp.mkdir(exist_ok=True)
    args = nfs_args(source.directory, volume=volume_name, snapshot=snap, name=name, repository=repository(repo))
    args['_ansible_check_mode'] = False
    process = multiprocessing.get_context('fork').Process(target=_child, args=(args, marker, point, str(nbd_tmp)))
    process.start()
    deadline = time.monotonic() + POLL_TIMEOUT
    try:
        while not (name in _creating(repo, volume_name) and os.path.exists(marker)):
            assert process.is_alive(), 'the backup ended (exit code %s) before it was killed' % process.exitcode
            assert time.monotonic() < deadline, 'the backup never reached the point where it is killed'
            time.sleep(0.02)
        helpers = _children(process.pid)  # qemu-nbd, serving the source snapshot and the repository volume
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join()
    assert process.exitcode == -signal.SIGKILL
    # qemu-nbd exits once its client is gone; until then it holds the image locks
    deadline = time.monotonic() + POLL_TIMEOUT
    while any(_running(pid) for pid in helpers):
        assert time.monotonic() < deadline, 'qemu-nbd did not exit after its client was killed'
        time.sleep(0.02)
    return helpers


def build(source, repo):
    """v (16 MiB) with 2 MiB of data spread out in s1, backed up as b1; s2 changes 1 MiB in 8 places."""
    source.create('v', '16M')
    for i in range(8):
        source.write(0x10 + i, '%dM' % (2 * i), '256k')
    source.snapshot('s1')
    ok(run_backup(source, repo, 's1', name='b1'))
    for i in range(8):
        source.write(0x40 + i, '%dM' % (2 * i + 1), '128k')
    source.snapshot('s2')


def chain_files(repo):
    return sorted(f for f in os.listdir(repo) if not f.endswith(('.info', '.json', '.lock')))


def check_killed_state(source, repo, target, scratch, name, parent, point=None):
    """What a cut-off backup leaves: listed as creating, not restorable, the earlier backups intact."""
    if point is not None:
        # the repository volume's active file holds what the killed run wrote: part of s2, or all of it
        active = image_digest(os.path.join(repo, read_info(repo, 'v')['active']), 'qcow2', scratch)
        if point == 'copy':
            assert active not in (source.digest('s1'), source.digest('s2'))
        else:
            assert active == source.digest('s2')
    entry = repository_meta(repo)['snapshots'][name]
    assert entry['status'] == 'creating'
    assert entry['backup']['snapshot'] == 's2' and entry['backup']['started']
    assert entry['backup']['identity'] == source.snapshots()['s2']['details']['uuid']
    found = listed(repo)
    assert found[name]['status'] == 'creating', found
    assert found[name]['parent'] == parent
    assert found[name]['details']['snapshot'] == 's2'
    assert found[name]['details']['image'] is None
    assert all(b['status'] == 'available' for n, b in found.items() if n != name), found
    if parent is not None:
        assert stored_digest(repo, found['b1'], scratch) == source.digest('s1')
        assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
    refused = run_module(volume, nfs_args(target, name='never', source_volume='v', source_backup=name,
                                          repository=repository(repo)))
    assert refused['failed'] and refused['msg'] == ('Backup %s of volume v cannot be restored: its status is '
                                                    'creating.' % name), refused
    assert not os.path.exists(os.path.join(target, 'volume-never'))


@pytest.mark.parametrize('point', ['copy', 'snapshot'])
def test_the_next_run_of_a_killed_backup_finishes_it(source, repo, target, scratch, tmp_path, point):
    build(source, repo)
    killed_backup(source, repo, tmp_path, 's2', 'b2', point)
    check_killed_state(source, repo, target, scratch, 'b2', 'b1', point)

    before = tree_state(repo)
    checked = ok(run_backup(source, repo, 's2', name='b2', check=True))
    assert checked['changed'] and checked['actions'][0].startswith('discard the unfinished backup b2, then store')
    assert tree_state(repo) == before

    result = ok(run_backup(source, repo, 's2', name='b2'))
    assert result['changed'] and result['actions'] == checked['actions']
    record = result['backup']
    assert record['status'] == 'available' and record['parent'] == 'b1'
    assert record['details']['snapshot'] == 's2'
    assert stored_digest(repo, record, scratch) == source.digest('s2')
    assert restored_digest(repo, target, 'b2', scratch) == source.digest('s2')
    assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
    assert [(n, b['status']) for n, b in listed(repo).items()] == [('b1', 'available'), ('b2', 'available')]
    assert not ok(run_backup(source, repo, 's2', name='b2'))['changed']

    # the next incremental builds on the finished backup
    source.write(0x77, '9M', '64k')
    source.snapshot('s3')
    record = ok(run_backup(source, repo, 's3', name='b3'))['backup']
    assert record['parent'] == 'b2'
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s3')


@pytest.mark.parametrize('point', ['copy', 'snapshot'])
def test_a_run_for_another_backup_discards_the_killed_one(source, repo, target, scratch, tmp_path, point):
    build(source, repo)
    killed_backup(source, repo, tmp_path, 's2', 'b2', point)
    check_killed_state(source, repo, target, scratch, 'b2', 'b1', point)

    source.write(0x66, '5M', '128k')
    source.snapshot('s3')
    result = ok(run_backup(source, repo, 's3', name='b3'))
    record = result['backup']
    assert record['status'] == 'available' and record['parent'] == 'b1'
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s3')
    assert stored_digest(repo, record, scratch) == source.digest('s3')
    assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
    found = listed(repo)
    assert list(found) == ['b1', 'b3'], found
    assert 'b2' not in (repository_meta(repo).get('snapshots') or {})


@pytest.mark.parametrize('point', ['copy', 'snapshot'])
def test_state_absent_discards_a_killed_backup(source, repo, target, scratch, tmp_path, point):
    build(source, repo)
    files = chain_files(repo)
    killed_backup(source, repo, tmp_path, 's2', 'b2', point)

    result = ok(run_backup(source, repo, 's2', name='b2', state='absent'))
    assert result['changed'] and result['actions'] == ['discard the unfinished backup b2 of volume v']
    assert list(listed(repo)) == ['b1']
    assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
    assert 'b2' not in (repository_meta(repo).get('snapshots') or {})
    before = tree_state(repo)
    assert not ok(run_backup(source, repo, 's2', name='b2', state='absent'))['changed']
    assert tree_state(repo) == before

    record = ok(run_backup(source, repo, 's2', name='b3'))['backup']
    assert record['parent'] == 'b1'
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s2')
    # nothing of what the killed run wrote stays behind
    assert chain_files(repo) == sorted(files + ['volume-v.b3'])


def test_a_killed_first_backup_is_finished_by_the_next_run(source, repo, target, scratch, tmp_path):
    source.create('v', '16M')
    for i in range(8):
        source.write(0x10 + i, '%dM' % (2 * i), '256k')
    source.snapshot('s2')
    killed_backup(source, repo, tmp_path, 's2', 'b2', 'copy')
    check_killed_state(source, repo, target, scratch, 'b2', None)
    assert [b['name'] for b in ok(run_module(backup_info, {'repository': repository(repo)}))['backups']] \
        == ['b2']

    record = ok(run_backup(source, repo, 's2', name='b2'))['backup']
    assert record['status'] == 'available' and record['parent'] is None
    assert record['details']['method'] == 'full'
    assert stored_digest(repo, record, scratch) == source.digest('s2')
    assert restored_digest(repo, target, 'b2', scratch) == source.digest('s2')


def test_a_killed_backup_after_the_newest_backup_was_deleted_is_finished_with_the_right_content(
        source, repo, target, scratch, tmp_path):
    build(source, repo)
    ok(run_backup(source, repo, 's2', name='b2'))
    # the repository volume's active file keeps the content of s2 once its backup b2 is deleted
    assert ok(run_backup(source, repo, 's2', name='b2', state='absent'))['changed']
    source.write(0x66, '5M', '128k')
    source.write(0x67, '13M', '64k')
    source.snapshot('s3')
    killed_backup(source, repo, tmp_path, 's3', 'b3', 'copy')
    assert [(n, b['status']) for n, b in listed(repo).items()] == [('b1', 'available'), ('b3', 'creating')]

    record = ok(run_backup(source, repo, 's3', name='b3'))['backup']
    assert record['status'] == 'available' and record['parent'] == 'b1'
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s3')
    assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
