# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Cinder's NFS driver needs of the files and names the nfs backend makes.

Cinder makes its files mode 0660 in its secure mode (giving them the base file's owner),
or 0666, and cinder-volume runs as a non-root user that writes the info file with a
plain open(). Cinder accepts backing files named volume-<id>[.<hex and dashes>] only.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import tempfile

import pytest

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import nfs_args, run_module, tree_state

NOBODY = 65534
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason='acting as another user needs root')
UUID = '3f2504e0-4f89-41d3-9a0c-0305e82c3301'


@pytest.fixture(name='shared_dir')
def shared_dir_fixture(qemu_tools):  # pylint: disable=unused-argument
    """A volume directory that another user can reach and write, as an NFS export is."""
    directory = tempfile.mkdtemp(prefix='stratum-cinder-', dir='/tmp')
    os.chmod(directory, 0o777)
    yield directory
    shutil.rmtree(directory)


def modes(directory):
    return dict((name, stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode))
                for name in sorted(os.listdir(directory)))


def owners(directory):
    return set((os.lstat(os.path.join(directory, n)).st_uid, os.lstat(os.path.join(directory, n)).st_gid)
               for n in os.listdir(directory))


def ok(result):
    assert not result.get('failed'), result
    return result


def test_new_volume_files_are_made_as_cinder_makes_them(shared_dir):
    ok(run_module(volume, nfs_args(shared_dir, name='v', size='1M')))
    ok(run_module(snapshot, nfs_args(shared_dir, volume='v', name='s1')))
    assert set(modes(shared_dir).values()) == {0o660}, modes(shared_dir)
    assert sorted(modes(shared_dir)) == ['volume-v', 'volume-v.info', 'volume-v.s1', 'volume-v.stratum.json',
                                         'volume-v.stratum.lock']


def test_file_mode_sets_the_mode_of_a_new_volume(shared_dir):
    args = nfs_args(shared_dir, name='v', size='1M')
    args['nfs']['file_mode'] = '0666'
    ok(run_module(volume, args))
    args = nfs_args(shared_dir, volume='v', name='s1')
    args['nfs']['file_mode'] = '0600'  # the volume exists: its files follow its base file, not this option
    ok(run_module(snapshot, args))
    assert set(modes(shared_dir).values()) == {0o666}, modes(shared_dir)


@AS_ROOT
def test_new_files_follow_the_owner_and_mode_of_the_base_file(shared_dir):
    """Cinder's secure mode: the base file belongs to Cinder's user; ours must too."""
    ok(run_module(volume, nfs_args(shared_dir, name='v', size='1M')))
    os.chown(os.path.join(shared_dir, 'volume-v'), NOBODY, NOBODY)
    os.chmod(os.path.join(shared_dir, 'volume-v'), 0o640)
    ok(run_module(snapshot, nfs_args(shared_dir, volume='v', name='s1')))
    written = ['volume-v.info', 'volume-v.s1', 'volume-v.stratum.json']
    for name in written:
        info = os.lstat(os.path.join(shared_dir, name))
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640), name


def _as_nobody(params):
    module = snapshot
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    result = run_module(module, params)
    if not result.get('failed'):
        # what cinder-volume does with the info file: a plain open() for writing
        with open(os.path.join(params['nfs']['path'], 'volume-v.info'), 'r+', encoding='utf-8'):
            pass
    return bool(result.get('changed')), result.get('msg')


@AS_ROOT
def test_a_volume_snapshotted_by_root_is_snapshotted_by_another_user(shared_dir):
    """Cinder's nas_secure_file_permissions=false: files 0666, cinder-volume not root."""
    params = nfs_args(shared_dir, name='v', size='1M')
    params['nfs']['file_mode'] = '0666'
    ok(run_module(volume, params))
    ok(run_module(snapshot, nfs_args(shared_dir, volume='v', name='s1')))
    with multiprocessing.get_context('fork').Pool(1) as pool:
        taken = pool.map(_as_nobody, [nfs_args(shared_dir, volume='v', name='s2')])
        deleted = pool.map(_as_nobody, [nfs_args(shared_dir, volume='v', name='s1', state='absent')])
    assert taken == [(True, None)] and deleted == [(True, None)]
    listed = ok(run_module(snapshot_info, nfs_args(shared_dir, volume='v')))['snapshots']
    assert [s['name'] for s in listed] == ['s2']


@pytest.mark.parametrize('module, args, words', [
    (volume, dict(name='db01', size='1M'), 'not a UUID'),
    (volume, dict(name='new', source_volume=UUID), 'not a UUID'),
    (snapshot, dict(volume=UUID, name='nightly-1'), 'hex digits and dashes'),
])
def test_cinder_compatible_refuses_names_cinder_refuses_before_anything(shared_dir, module, args, words):
    ok(run_module(volume, nfs_args(shared_dir, name=UUID, size='1M')))
    before = tree_state(shared_dir)
    params = nfs_args(shared_dir, **args)
    params['nfs']['cinder_compatible'] = True
    result = run_module(module, params)
    assert result['failed'] and words in result['msg'] and result['msg'].endswith('.'), result
    assert tree_state(shared_dir) == before


def test_cinder_compatible_takes_uuid_names(shared_dir):
    params = nfs_args(shared_dir, name=UUID, size='1M')
    params['nfs']['cinder_compatible'] = True
    ok(run_module(volume, params))
    params = nfs_args(shared_dir, volume=UUID, name='6a1f0b9c-52d4-4c1e-9f7a-0b1c2d3e4f50')
    params['nfs']['cinder_compatible'] = True
    assert ok(run_module(snapshot, params))['changed']


@pytest.mark.parametrize('mode', ['777x', '1777', 'rw', '0o666', ''])
def test_a_bad_file_mode_is_one_sentence(shared_dir, mode):
    params = nfs_args(shared_dir, name='v', size='1M')
    params['nfs']['file_mode'] = mode
    result = run_module(volume, params)
    if mode == '':
        assert not result.get('failed'), result  # empty means the default
        return
    assert result['failed'] and 'not an octal mode' in result['msg'], result
    assert os.listdir(shared_dir) == []
