# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chains that do not follow the layout are refused, and nothing is modified."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import nfs_args, run_module, sh, tree_state


def setup_volume(voldir):
    """volume-v with snapshot s1 (overlay volume-v.s1 active)."""
    assert run_module(volume, nfs_args(voldir, name='v', size='1M'))['changed']
    assert run_module(snapshot, nfs_args(voldir, volume='v', name='s1'))['changed']
    return str(voldir)


def rebase(directory, image, backing, fmt='raw'):
    sh('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F', fmt, '-b', backing, image, cwd=directory)


def absolute_backing(directory, tmp):
    rebase(directory, 'volume-v.s1', os.path.join(directory, 'volume-v'))


def outside_backing(directory, tmp):
    other = os.path.join(str(tmp), 'other')
    os.mkdir(other)
    sh('qemu-img', 'create', '-q', '-f', 'raw', os.path.join(other, 'volume-v'), '1M')
    rebase(directory, 'volume-v.s1', '../other/volume-v')


def unlisted_name(directory, tmp):
    sh('qemu-img', 'create', '-q', '-f', 'raw', 'disk.img', '1M', cwd=directory)
    rebase(directory, 'volume-v.s1', 'disk.img')


def other_volume(directory, tmp):
    sh('qemu-img', 'create', '-q', '-f', 'raw', 'volume-w', '1M', cwd=directory)
    rebase(directory, 'volume-v.s1', 'volume-w')


def loop(directory, tmp):
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'volume-v.s1', '-o', 'size=1M',
       'volume-v.s2', cwd=directory)
    info = json.load(open(os.path.join(directory, 'volume-v.info')))
    info.update({'s2': 'volume-v.s2', 'active': 'volume-v.s2'})
    json.dump(info, open(os.path.join(directory, 'volume-v.info'), 'w'))
    rebase(directory, 'volume-v.s1', 'volume-v.s2', 'qcow2')


def data_file(directory, tmp):
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=volume-v.s2data', 'volume-v.s2', '1M',
       cwd=directory)
    rebase(directory, 'volume-v.s2', 'volume-v.s1', 'qcow2')
    info = json.load(open(os.path.join(directory, 'volume-v.info')))
    info.update({'s2': 'volume-v.s2', 'active': 'volume-v.s2'})
    json.dump(info, open(os.path.join(directory, 'volume-v.info'), 'w'))


def symlinked_base(directory, tmp):
    target = os.path.join(str(tmp), 'elsewhere.raw')
    os.rename(os.path.join(directory, 'volume-v'), target)
    os.symlink(target, os.path.join(directory, 'volume-v'))


def info_escapes(directory, tmp):
    json.dump({'active': '../../etc/passwd', 's1': 'volume-v.s1'}, open(os.path.join(directory, 'volume-v.info'), 'w'))


def info_absolute(directory, tmp):
    json.dump({'active': 'volume-v.s1', 's1': '/etc/passwd'}, open(os.path.join(directory, 'volume-v.info'), 'w'))


def wrong_backing_format(directory, tmp):
    rebase(directory, 'volume-v.s1', 'volume-v', 'qcow2')


def info_not_json(directory, tmp):
    open(os.path.join(directory, 'volume-v.info'), 'w').write('{"active": ')


HOSTILE = [absolute_backing, outside_backing, unlisted_name, other_volume, loop, data_file, symlinked_base,
           info_escapes, info_absolute, wrong_backing_format, info_not_json]

CHANGES = [
    ('snapshot', dict(volume='v', name='s9')),
    ('snapshot', dict(volume='v', name='s1', state='absent')),
    ('volume', dict(name='v', size='2M')),
    ('volume', dict(name='v', state='absent', force=True)),
]
MODULES = {'snapshot': snapshot, 'volume': volume}


@pytest.mark.parametrize('corrupt', HOSTILE)
@pytest.mark.parametrize('module, args', CHANGES, ids=['snapshot-create', 'snapshot-delete', 'grow', 'delete'])
@pytest.mark.parametrize('check', [True, False], ids=['check', 'real'])
def test_hostile_chain_is_refused_untouched(voldir, tmp_path, corrupt, module, args, check):
    directory = setup_volume(voldir)
    corrupt(directory, tmp_path)
    before = tree_state(directory)
    outside = tree_state(str(tmp_path / 'other')) if corrupt is outside_backing else None
    commands = []
    result = run_module(MODULES[module], nfs_args(voldir, **args), check=check, commands=commands)
    assert result['failed'], result
    assert result['msg'].startswith(('Volume v', 'Info file', 'Image file')), result['msg']
    assert 'refused' in result['msg'] or 'not valid JSON' in result['msg'] or 'regular file' in result['msg'], \
        result['msg']
    assert commands == [], 'no command may run on a hostile chain'
    assert tree_state(directory) == before
    if outside is not None:
        assert tree_state(str(tmp_path / 'other')) == outside


@pytest.mark.parametrize('corrupt', HOSTILE)
def test_hostile_chain_lists_as_error(voldir, tmp_path, corrupt):
    directory = setup_volume(voldir)
    # a healthy neighbour, which must list as it is
    assert run_module(volume, nfs_args(voldir, name='ok', size='1M'))['changed']
    assert run_module(snapshot, nfs_args(voldir, volume='ok', name='k1'))['changed']
    corrupt(directory, tmp_path)
    before = tree_state(directory)
    volumes = run_module(volume_info, nfs_args(voldir))['volumes']
    listed = dict((v['name'], v) for v in volumes)
    assert listed['v']['status'] == 'error' and listed['v']['details']['reason']
    others = dict((name, v['status']) for name, v in listed.items() if name != 'v')
    assert others == dict({'ok': 'available'}, **({'w': 'available'} if corrupt is other_volume else {})), others
    snaps = run_module(snapshot_info, nfs_args(voldir))
    assert not snaps['failed']
    of_v = [s for s in snaps['snapshots'] if s['volume'] == 'v']
    assert of_v, 'volume v has a snapshot, so its listing holds at least one record'
    assert [s['status'] for s in of_v] == ['error'] * len(of_v) and all(s['details'].get('reason') for s in of_v), of_v
    assert [(s['volume'], s['name'], s['status']) for s in snaps['snapshots'] if s['volume'] != 'v'] == \
        [('ok', 'k1', 'available')]
    assert tree_state(directory) == before
