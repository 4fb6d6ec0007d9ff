# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the repository records is checked before it is trusted, and a backup that is wrong never stays available."""

from __future__ import annotations

import json
import os

from ansible_collections.stratum.storage.plugins.modules import volume
from ansible_collections.stratum.storage.tests.unit.helpers import (
    nfs_args, qemu_write, read_info, run_module, sh, tree_state)
from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import (
    listed, repository, repository_meta, restored_digest, run_backup, stored_digest, write_repository_meta)


def refused(result, *words):
    assert result['failed'] and not result.get('changed'), result
    assert result['msg'].count('. ') == 0 and result['msg'].endswith('.'), result['msg']
    for word in words:
        assert word in result['msg'], result['msg']


def two_backups(source, repo):
    source.create()
    source.write(1, 0)
    source.snapshot('s1')
    assert run_backup(source, repo, 's1', name='b1')['changed']
    source.write(2, '1M')
    source.snapshot('s2')
    assert run_backup(source, repo, 's2', name='b2')['changed']


def test_a_backup_named_like_the_info_file_is_refused(source, repo):
    two_backups(source, repo)
    before = tree_state(repo)
    refused(run_backup(source, repo, 's2', name='info'), 'reserved')
    assert tree_state(repo) == before
    assert sorted(listed(repo)) == ['b1', 'b2']


def test_a_volume_the_repository_did_not_make_is_left_alone(source, repo, scratch):
    source.create()
    source.snapshot('s1')
    # an nfs volume of the same name made in the repository directory by other means
    assert run_module(volume, nfs_args(repo, name='v', size='4M'))['changed']
    qemu_write(os.path.join(repo, 'volume-v'), 'raw', 0x77, '1M')
    before = tree_state(repo)
    refused(run_backup(source, repo, 's1', name='b1'), 'records no source')
    assert tree_state(repo) == before


def test_a_record_of_the_content_that_disagrees_with_its_backup_means_a_compare(source, repo, scratch):
    two_backups(source, repo)
    source.write(3, '2M')
    source.snapshot('s3')
    meta = repository_meta(repo)
    meta['current']['identity'] = source.snapshots()['s1']['details']['uuid']  # claims s1 while b2 (s2) is held
    write_repository_meta(repo, meta)
    result = run_backup(source, repo, 's3', name='b3', verify=True)
    assert result['changed'] and not result['failed'], result
    assert result['backup']['details']['method'] == 'compare'
    assert stored_digest(repo, listed(repo)['b3'], scratch) == source.digest('s3')


def test_an_unfinished_backup_that_names_a_file_of_the_chain_is_refused(source, repo):
    two_backups(source, repo)
    # b1's overlay renamed to volume-v.x (a valid layout name), and an unfinished backup "x" recorded
    os.rename(os.path.join(repo, 'volume-v.b1'), os.path.join(repo, 'volume-v.x'))
    sh('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', 'volume-v.x', '-F', 'qcow2', 'volume-v.b2', cwd=repo)
    info = read_info(repo, 'v')
    info['b1'] = 'volume-v.x'
    with open(os.path.join(repo, 'volume-v.info'), 'w') as handle:
        json.dump(info, handle)
    meta = repository_meta(repo)
    meta['snapshots']['x'] = {'status': 'creating', 'backup': {}}
    write_repository_meta(repo, meta)
    assert sorted(b for b, entry in listed(repo).items() if entry['status'] == 'available') == ['b1', 'b2']
    source.snapshot('s3')
    before = tree_state(repo)
    refused(run_backup(source, repo, 's3', name='b3'), 'names a file of its chain')
    assert tree_state(repo) == before


def test_a_backup_that_fails_its_verification_is_listed_as_error_and_not_trusted(source, repo, scratch, tmp_path):
    two_backups(source, repo)
    # corrupt b2's stored image (the file below b2's overlay) behind the module's back
    qemu_write(os.path.join(repo, listed(repo)['b2']['details']['image']), 'qcow2', 0x66, '3M')
    result = run_backup(source, repo, 's2', name='b2', verify=True)
    refused(result, 'does not match')
    entry = listed(repo)['b2']
    assert entry['status'] == 'error' and 'does not match' in entry['details']['reason']
    target = tmp_path / 'restored'
    target.mkdir()
    failed = run_module(volume, nfs_args(str(target), name='r', source_volume='v', source_backup='b2',
                                         repository=repository(repo)))
    assert failed['failed'] and 'status is error' in failed['msg']
    # the next backup does not trust a change set from what the corrupt backup holds
    source.write(4, '2M')
    source.snapshot('s3')
    result = run_backup(source, repo, 's3', name='b3', verify=True)
    assert result['changed'] and result['backup']['details']['method'] == 'compare', result
    assert restored_digest(repo, target, 'b3', scratch) == source.digest('s3')


def test_a_restore_into_the_repository_itself_is_refused(source, repo):
    two_backups(source, repo)
    before = tree_state(repo)
    refused(run_module(volume, nfs_args(repo, name='v', source_volume='v', source_backup='b1',
                                        repository=repository(repo))), 'restore into another directory')
    assert tree_state(repo) == before


def test_a_smaller_snapshot_is_refused_in_check_mode_too_and_nothing_is_written(source, repo, tmp_path):
    two_backups(source, repo)
    run_module(volume, nfs_args(source.directory, name='v', state='absent', force=True))
    source.create(size='2M')
    source.snapshot('s3')
    before = tree_state(repo)
    for check in (True, False):
        refused(run_backup(source, repo, 's3', name='b3', check=check), 'never shrinks')
        assert tree_state(repo) == before


def test_a_first_backup_cut_off_before_its_volume_existed_is_started_again(source, repo, scratch):
    source.create()
    source.write(1, 0)
    source.snapshot('s1')
    with open(os.path.join(repo, 'volume-v.stratum.new'), 'wb') as handle:
        handle.write(b'partial')
    result = run_backup(source, repo, 's1', name='b1', verify=True)
    assert result['changed'] and not result['failed'], result
    assert stored_digest(repo, listed(repo)['b1'], scratch) == source.digest('s1')
    assert not os.path.exists(os.path.join(repo, 'volume-v.stratum.new'))


def test_a_long_temporary_directory_does_not_stop_the_copy(source, repo, scratch, tmp_path, monkeypatch):
    # qemu-nbd cannot bind a UNIX socket whose path is longer than 107 bytes, and then waits forever
    long_tmp = tmp_path / ('t' * 60) / ('u' * 60)
    long_tmp.mkdir(parents=True)
    monkeypatch.setattr('tempfile.tempdir', str(long_tmp))
    source.create()
    source.write(1, 0)
    source.snapshot('s1')
    result = run_backup(source, repo, 's1', name='b1', verify=True)
    assert result['changed'] and not result['failed'], result
    assert stored_digest(repo, listed(repo)['b1'], scratch) == source.digest('s1')
