# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of nfs volumes into a repository directory, with the real qemu-img and qemu-nbd.

Every content claim is checked on the files: the repository's chain read with
qemu-img, and a restore with the volume module into a third directory, each
compared with the source snapshot's image.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.stratum.storage.plugins.modules import backup_info, snapshot_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, run_module, sh, tree_state)
from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import (
    KiB, MiB, SNAPSHOT_KEYS, listed, repository, restored_digest, run_backup, stored_digest)


def ok(result):
    assert not result['failed'], result
    return result


def three_backups(source, repo):
    """v (4 MiB) with s1/b1 (192 KiB of data), s2/b2 (+128 KiB at 1 MiB), s3/b3 (+64 KiB at 2 MiB and 3 MiB)."""
    source.create('v', '4M')
    source.write(0x11, 0, '192k')
    source.snapshot('s1')
    results = [ok(run_backup(source, repo, 's1', name='b1'))]
    source.write(0x22, '1M', '128k')
    source.snapshot('s2')
    results.append(ok(run_backup(source, repo, 's2', name='b2')))
    source.write(0x33, '2M', '64k')
    source.write(0x44, '3M', '64k')
    source.snapshot('s3')
    results.append(ok(run_backup(source, repo, 's3', name='b3')))
    return results


def test_full_then_two_incrementals_copy_exactly_what_changed(source, repo, target, scratch):
    first, second, third = three_backups(source, repo)

    assert first['changed'] and first['actions'] == ['store snapshot s1 of volume v as backup b1 (all of it)']
    full = first['backup']
    assert (full['name'], full['volume'], full['backend'], full['status']) == ('b1', 'v', 'nfs', 'available')
    assert full['parent'] is None and full['size'] == 4 * MiB
    assert full['details']['method'] == 'full' and full['details']['base'] is None
    # a full backup writes the data that is there, never the zeros around it
    assert full['details']['bytes_written'] == 192 * KiB
    assert full['details']['bytes_written'] <= full['details']['bytes_read'] <= 4 * MiB
    assert full['details']['snapshot'] == 's1'
    assert full['details']['identity'] == source.snapshots()['s1']['details']['uuid']
    assert full['details']['source_volume'] == 'v' and full['details']['source_backend'] == 'nfs'
    assert full['details']['source_location'] == source.directory
    assert full['details']['started'] <= full['details']['finished']

    for result, base, parent, changed in ((second, 's1', 'b1', 128 * KiB), (third, 's2', 'b2', 128 * KiB)):
        record = result['backup']
        assert result['changed']
        assert result['actions'] == ['store snapshot %s of volume v as backup %s (the changes since snapshot %s)'
                                     % (record['details']['snapshot'], record['name'], base)]
        assert record['status'] == 'available' and record['parent'] == parent
        assert record['details']['method'] == 'changes' and record['details']['base'] == base
        # the contract is at most 1.1x read and 1.2x written; aligned 64 KiB writes are read and written exactly
        assert record['details']['bytes_read'] == changed
        assert record['details']['bytes_written'] == changed
        assert record['details']['bytes_zeroed'] == 0

    # each backup's image in the repository holds its snapshot's content, and so does its restore
    for result, snap in ((first, 's1'), (second, 's2'), (third, 's3')):
        assert stored_digest(repo, result['backup'], scratch) == source.digest(snap)
        assert restored_digest(repo, target, result['backup']['name'], scratch) == source.digest(snap)
    assert len(set(source.digests.values())) == 3


def test_zeros_written_over_data_are_recorded_as_zeros(source, repo, target, scratch):
    three_backups(source, repo)
    source.write(0x00, 0, '64k')           # zeros over the data of s1
    source.write(0x55, '3M', '64k')        # and new data over the data of s3
    source.snapshot('s4')
    record = ok(run_backup(source, repo, 's4', name='b4'))['backup']
    assert record['details']['method'] == 'changes'
    assert record['details']['bytes_read'] == 128 * KiB
    assert record['details']['bytes_written'] == 64 * KiB
    assert record['details']['bytes_zeroed'] == 64 * KiB
    assert stored_digest(repo, record, scratch) == source.digest('s4')
    assert restored_digest(repo, target, 'b4', scratch) == source.digest('s4')


def test_an_incremental_whose_base_snapshot_is_gone_compares_and_writes_what_differs(source, repo, target, scratch):
    three_backups(source, repo)
    source.write(0x66, '1M', '64k')
    source.snapshot('s4')
    source.delete_snapshot('s3')           # the snapshot that the repository's newest backup holds
    record = ok(run_backup(source, repo, 's4', name='b4'))['backup']
    assert record['details']['method'] == 'compare' and record['details']['base'] is None
    assert record['parent'] == 'b3'
    assert record['details']['bytes_written'] == 64 * KiB
    assert record['details']['bytes_read'] == 4 * MiB
    assert stored_digest(repo, record, scratch) == source.digest('s4')
    assert restored_digest(repo, target, 'b4', scratch) == source.digest('s4')
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s3')


def test_the_same_task_again_changes_nothing(source, repo):
    three_backups(source, repo)
    before = tree_state(repo), tree_state(source.directory)
    for snap, name in (('s1', 'b1'), ('s2', 'b2'), ('s3', 'b3')):
        again = ok(run_backup(source, repo, snap, name=name))
        assert not again['changed'] and again['actions'] == [], again
        assert again['backup']['name'] == name and again['backup']['status'] == 'available'
    # the name defaults to the snapshot's: a backup named s3 is another backup, made once
    assert ok(run_backup(source, repo, 's3'))['changed']
    middle = tree_state(repo), tree_state(source.directory)
    assert middle != before
    assert not ok(run_backup(source, repo, 's3'))['changed']
    # deleting what is not there is no change either, for a backup and for a volume without backups
    for volume_name in ('v', 'w'):
        for check in (True, False):
            absent = ok(run_backup(source, repo, 's9', name='b9', volume_name=volume_name, state='absent',
                                   check=check))
            assert not absent['changed'] and absent['backup'] is None, absent
    assert (tree_state(repo), tree_state(source.directory)) == middle


@pytest.mark.parametrize('first', [True, False], ids=['first', 'incremental'])
def test_check_mode_of_a_new_backup_changes_nothing_and_predicts_it(source, repo, scratch, first):
    source.create('v', '4M')
    source.write(0x11, 0, '128k')
    source.snapshot('s1')
    if not first:
        ok(run_backup(source, repo, 's1', name='b1'))
        source.write(0x22, '2M', '64k')
        source.snapshot('s2')
    snap, name = ('s1', 'b1') if first else ('s2', 'b2')
    before = tree_state(repo), tree_state(source.directory)
    checked = ok(run_backup(source, repo, snap, name=name, check=True))
    assert (tree_state(repo), tree_state(source.directory)) == before
    assert checked['changed']
    predicted = checked['backup']
    assert predicted['name'] == name and predicted['volume'] == 'v' and predicted['status'] == 'available'
    assert predicted['parent'] == (None if first else 'b1')
    assert predicted['size'] == 4 * MiB
    assert predicted['details']['snapshot'] == snap
    assert predicted['details']['base'] == (None if first else 's1')
    assert predicted['details']['repository'] == repo

    real = ok(run_backup(source, repo, snap, name=name))
    assert real['changed'] and real['actions'] == checked['actions']
    for key in ('name', 'volume', 'backend', 'status', 'size', 'parent'):
        assert real['backup'][key] == predicted[key], key
    for key in ('snapshot', 'identity', 'base', 'repository', 'source_volume'):
        assert real['backup']['details'][key] == predicted['details'][key], key
    assert stored_digest(repo, real['backup'], scratch) == source.digest(snap)


def test_diff_has_before_and_after(source, repo):
    source.create('v', '4M')
    source.write(0x11, 0, '64k')
    source.snapshot('s1')
    made = ok(run_backup(source, repo, 's1', name='b1'))
    assert made['diff']['before'] == {}
    assert made['diff']['after'] == made['backup']

    verified = ok(run_backup(source, repo, 's1', name='b1', verify=True))
    assert verified['changed']
    assert verified['diff']['before']['name'] == 'b1' and verified['diff']['before']['details']['checksum'] is None
    assert verified['diff']['after'] == verified['backup']
    assert verified['diff']['after']['details']['checksum'].startswith('sha256:')

    deleted = ok(run_backup(source, repo, 's1', name='b1', state='absent'))
    assert deleted['changed'] and deleted['backup'] is None
    assert deleted['diff']['before'] == verified['backup']
    assert deleted['diff']['after'] == {}


def test_deleting_the_middle_backup_keeps_every_other_backup_byte_for_byte(source, repo, target, scratch):
    three_backups(source, repo)
    source.write(0x77, '1M', '64k')
    source.snapshot('s4')
    ok(run_backup(source, repo, 's4', name='b4'))

    deleted = ok(run_backup(source, repo, 's2', name='b2', state='absent'))
    assert deleted['changed'] and deleted['actions'] == ['delete backup b2 of volume v']
    found = listed(repo)
    assert list(found) == ['b1', 'b3', 'b4']
    assert [found[n]['parent'] for n in found] == [None, 'b1', 'b3']
    for name, snap in (('b1', 's1'), ('b3', 's3'), ('b4', 's4')):
        assert found[name]['status'] == 'available'
        assert stored_digest(repo, found[name], scratch) == source.digest(snap), name
        assert restored_digest(repo, target, name, scratch) == source.digest(snap), name
    before = tree_state(repo)
    assert not ok(run_backup(source, repo, 's2', name='b2', state='absent'))['changed']
    assert tree_state(repo) == before


@pytest.mark.parametrize('base_kept', [True, False], ids=['base-kept', 'base-deleted'])
def test_deleting_the_newest_backup_then_backing_up_again_is_correct(source, repo, target, scratch, base_kept):
    three_backups(source, repo)
    assert ok(run_backup(source, repo, 's3', name='b3', state='absent'))['changed']
    assert list(listed(repo)) == ['b1', 'b2']
    source.write(0x88, 0, '64k')
    source.write(0x99, '3M', '128k')
    source.snapshot('s4')
    if not base_kept:
        source.delete_snapshot('s3')
    record = ok(run_backup(source, repo, 's4', name='b4'))['backup']
    assert record['parent'] == 'b2'
    assert record['details']['method'] == ('changes' if base_kept else 'compare')
    assert stored_digest(repo, record, scratch) == source.digest('s4')
    found = listed(repo)
    assert list(found) == ['b1', 'b2', 'b4']
    for name, snap in (('b1', 's1'), ('b2', 's2'), ('b4', 's4')):
        assert stored_digest(repo, found[name], scratch) == source.digest(snap), name
        assert restored_digest(repo, target, name, scratch) == source.digest(snap), name
    # and the next incremental builds on the right content too
    source.write(0xaa, '2M', '64k')
    source.snapshot('s5')
    record = ok(run_backup(source, repo, 's5', name='b5'))['backup']
    assert record['details']['method'] == 'changes' and record['details']['base'] == 's4'
    assert restored_digest(repo, target, 'b5', scratch) == source.digest('s5')


def test_verify_records_the_sha256_of_the_source_snapshot(source, repo):
    source.create('v', '4M')
    source.write(0x11, '512k', '256k')
    source.snapshot('s1')
    result = ok(run_backup(source, repo, 's1', name='b1', verify=True))
    assert result['actions'] == ['store snapshot s1 of volume v as backup b1 (all of it), then verify it']
    assert result['backup']['details']['checksum'] == 'sha256:' + source.digest('s1')
    assert listed(repo)['b1']['details']['checksum'] == 'sha256:' + source.digest('s1')
    before = tree_state(repo)
    again = ok(run_backup(source, repo, 's1', name='b1', verify=True))
    assert not again['changed'] and tree_state(repo) == before


def test_verify_of_an_unverified_backup_verifies_it_once(source, repo):
    three_backups(source, repo)
    assert listed(repo)['b2']['details']['checksum'] is None
    source_before = tree_state(source.directory)
    checked = ok(run_backup(source, repo, 's2', name='b2', verify=True, check=True))
    assert checked['changed'] and checked['backup']['details']['checksum'] is None
    result = ok(run_backup(source, repo, 's2', name='b2', verify=True))
    assert result['changed']
    assert result['actions'] == checked['actions'] == ['verify backup b2 of volume v against snapshot s2']
    assert result['backup']['details']['checksum'] == 'sha256:' + source.digest('s2')
    found = listed(repo)
    assert found['b2']['details']['checksum'] == 'sha256:' + source.digest('s2')
    assert found['b1']['details']['checksum'] is None and found['b3']['details']['checksum'] is None
    assert tree_state(source.directory) == source_before
    before = tree_state(repo)
    again = ok(run_backup(source, repo, 's2', name='b2', verify=True))
    assert not again['changed'] and again['actions'] == []
    assert tree_state(repo) == before


def test_a_backup_name_that_holds_another_snapshot_is_refused(source, repo):
    three_backups(source, repo)
    old = listed(repo)['b1']['details']['identity']
    source.delete_snapshot('s1')
    source.snapshot('s1')                  # the same name, another snapshot
    new = source.snapshots()['s1']['details']['uuid']
    before = tree_state(repo)
    for check in (True, False):
        result = run_backup(source, repo, 's1', name='b1', check=check)
        assert result['failed'] and old in result['msg'] and new in result['msg'], result
        assert 'Traceback' not in result['msg'] and result['msg'].count('. ') == 0
    result = run_backup(source, repo, 's2', name='b1')
    assert result['failed'] and 'snapshot s1' in result['msg'] and 'snapshot s2' in result['msg'], result
    assert tree_state(repo) == before


def test_a_restore_never_overwrites_an_existing_volume(source, repo, target, scratch):
    three_backups(source, repo)
    assert ok(run_module(volume, nfs_args(target, name='r', size='2M')))['changed']
    source_dir = source.directory
    qemu_write(os.path.join(target, 'volume-r'), 'raw', 0x5a, 0, '64k')
    before = tree_state(target), tree_state(repo), tree_state(source_dir)
    content = image_digest(os.path.join(target, 'volume-r'), 'raw', scratch)
    for check in (True, False):
        result = ok(run_module(volume, nfs_args(target, name='r', source_volume='v', source_backup='b3',
                                                repository=repository(repo)), check=check))
        assert not result['changed'] and result['actions'] == [], result
        assert result['volume']['size'] == 2 * MiB
    assert (tree_state(target), tree_state(repo), tree_state(source_dir)) == before
    assert image_digest(os.path.join(target, 'volume-r'), 'raw', scratch) == content


def test_a_restore_into_a_bigger_qcow2_volume_holds_the_backup_then_zeros(source, repo, target, scratch):
    source.create('v', '4M')
    source.write(0x11, '3M', '1M')
    source.snapshot('s1')
    ok(run_backup(source, repo, 's1', name='b1'))
    args = nfs_args(target, name='big', size='6M', format='qcow2', source_volume='v', source_backup='b1',
                    repository=repository(repo))
    before = tree_state(target)
    checked = ok(run_module(volume, args, check=True))
    assert tree_state(target) == before
    assert checked['changed'] and checked['actions'] == [
        'restore backup b1 of volume v into new qcow2 volume big of %d bytes' % (6 * MiB)]
    assert checked['volume']['size'] == 6 * MiB and checked['volume']['origin'] is None
    result = ok(run_module(volume, args))
    assert result['changed'] and result['actions'] == checked['actions']
    assert result['volume']['size'] == 6 * MiB and result['volume']['details']['format'] == 'qcow2'
    # the expected content: the snapshot's image, then 2 MiB of zeros
    expected = os.path.join(scratch, 'expected.qcow2')
    sh('qemu-img', 'convert', '-q', '-O', 'qcow2', os.path.join(source.directory, 'volume-v'), expected)
    sh('qemu-img', 'resize', '-q', '-f', 'qcow2', expected, '6M')
    assert image_digest(os.path.join(target, 'volume-big'), 'qcow2', scratch) == image_digest(expected, 'qcow2',
                                                                                              scratch)
    assert image_digest(os.path.join(source.directory, 'volume-v'), 'raw', scratch) == source.digest('s1')


def test_backup_info_lists_one_volume_or_all_in_the_uniform_schema(source, repo):
    three_backups(source, repo)
    source.create('w', '2M')
    source.write(0x21, '1M', '64k', name='w')
    source.snapshot('t1', name='w')
    ok(run_backup(source, repo, 't1', volume_name='w'))

    one = ok(run_module(backup_info, {'repository': repository(repo), 'volume': 'w'}))
    assert not one['changed']
    assert [(b['volume'], b['name']) for b in one['backups']] == [('w', 't1')]
    every = ok(run_module(backup_info, {'repository': repository(repo)}))
    assert not every['changed']
    assert sorted((b['volume'], b['name']) for b in every['backups']) == \
        [('v', 'b1'), ('v', 'b2'), ('v', 'b3'), ('w', 't1')]
    for record in one['backups'] + every['backups']:
        assert set(record) == SNAPSHOT_KEYS, record
        assert record['backend'] == 'nfs' and record['status'] == 'available'
        assert isinstance(record['size'], int) and isinstance(record['created'], str)
        assert record['details']['repository'] == repo
    sizes = dict(((b['volume'], b['name']), b['size']) for b in every['backups'])
    assert sizes[('w', 't1')] == 2 * MiB and sizes[('v', 'b1')] == 4 * MiB
    parents = dict(((b['volume'], b['name']), b['parent']) for b in every['backups'])
    assert parents == {('v', 'b1'): None, ('v', 'b2'): 'b1', ('v', 'b3'): 'b2', ('w', 't1'): None}
    assert ok(run_module(backup_info, {'repository': repository(repo), 'volume': 'x'}))['backups'] == []
    # the listing is the module's own record of each backup
    assert [b for b in every['backups'] if b['volume'] == 'w'] == one['backups']
    # backup_info needs no backend and reads only: the same listing with a backend given
    with_backend = ok(run_module(backup_info, nfs_args(source.directory, repository=repository(repo))))
    assert with_backend['backups'] == every['backups']


def test_a_grown_volume_grows_its_repository_volume_and_older_backups_keep_their_size(source, repo, target, scratch):
    source.create('v', '4M')
    source.write(0x11, '3M', '64k')
    source.snapshot('s1')
    ok(run_backup(source, repo, 's1', name='b1'))
    assert ok(run_module(volume, nfs_args(source.directory, name='v', size='6M')))['changed']
    source.write(0x22, '5M', '64k')
    source.snapshot('s2')
    record = ok(run_backup(source, repo, 's2', name='b2'))['backup']
    assert record['size'] == 6 * MiB and record['details']['method'] == 'changes'
    assert record['details']['bytes_written'] == 64 * KiB
    found = listed(repo)
    assert (found['b1']['size'], found['b2']['size']) == (4 * MiB, 6 * MiB)
    assert restored_digest(repo, target, 'b1', scratch) == source.digest('s1')
    assert restored_digest(repo, target, 'b2', scratch) == source.digest('s2')


def test_a_temporary_snapshot_lists_as_temporary(source):
    source.create('v', '1M')
    made = source.snapshot('keep')
    assert made['details']['temporary'] is False
    made = source.snapshot('tmp', temporary=True)
    assert made['details']['temporary'] is True
    snaps = dict((s['name'], s) for s in run_module(snapshot_info, nfs_args(source.directory, volume='v'))['snapshots'])
    assert snaps['tmp']['details']['temporary'] is True
    assert snaps['keep']['details']['temporary'] is False
