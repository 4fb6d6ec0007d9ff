# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data invariants of snapshot delete on real qcow2 chains (real qemu-img and qemu-io)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, read_info, run_module, sh)

SNAPSHOTS = ['s1', 's2', 's3', 's4', 's5']


def active_file(voldir, name):
    info_path = os.path.join(str(voldir), 'volume-%s.info' % name)
    if os.path.exists(info_path):
        return os.path.join(str(voldir), read_info(str(voldir), name)['active'])
    return os.path.join(str(voldir), 'volume-%s' % name)


def fmt_of(path):
    with open(path, 'rb') as handle:
        return 'qcow2' if handle.read(4) == b'QFI\xfb' else 'raw'


def write(voldir, name, pattern, offset):
    path = active_file(voldir, name)
    qemu_write(path, fmt_of(path), pattern, offset)


def point_in_time_digests(voldir, name, scratch):
    """Digest of every snapshot's point-in-time image and of the live volume."""
    result = run_module(snapshot_info, nfs_args(voldir, volume=name))
    assert not result['failed'], result
    digests = {}
    for snap in result['snapshots']:
        image = os.path.join(str(voldir), snap['details']['image'])
        digests[snap['name']] = image_digest(image, snap['details']['image_format'], scratch)
    live = active_file(voldir, name)
    digests['live'] = image_digest(live, fmt_of(live), scratch)
    return digests


def build_chain(voldir, base_format, grow_at=None):
    """A volume with five snapshots and different data written before each and after the last."""
    assert run_module(volume, nfs_args(voldir, name='vol', size='4M', format=base_format))['changed']
    for i, name in enumerate(SNAPSHOTS, start=1):
        write(voldir, 'vol', i, 0)                 # overwritten every time
        write(voldir, 'vol', 0x10 + i, i * 65536)  # one new block each time
        if grow_at == name:
            assert run_module(volume, nfs_args(voldir, name='vol', size='6M'))['changed']
            write(voldir, 'vol', 0x40 + i, '5M')
        result = run_module(snapshot, nfs_args(voldir, volume='vol', name=name))
        assert result['changed'] and result['snapshot']['status'] == 'available', result
    write(voldir, 'vol', 0x7f, 0)
    write(voldir, 'vol', 0x7e, 7 * 65536)


@pytest.mark.parametrize('base_format', ['raw', 'qcow2'])
@pytest.mark.parametrize('victim', ['s1', 's3', 's5'], ids=['first', 'middle', 'active'])
def test_delete_keeps_every_other_point_in_time(voldir, scratch, base_format, victim):
    build_chain(voldir, base_format)
    before = point_in_time_digests(voldir, 'vol', scratch)
    assert len(set(before.values())) == len(before), 'each point in time must hold different data'

    result = run_module(snapshot, nfs_args(voldir, volume='vol', name=victim, state='absent'))
    assert result['changed'] and result['snapshot'] is None, result

    after = point_in_time_digests(voldir, 'vol', scratch)
    expected = dict(before)
    del expected[victim]
    assert after == expected
    info = read_info(str(voldir), 'vol')
    assert sorted(info) == sorted(['active'] + [s for s in SNAPSHOTS if s != victim])
    assert not os.path.exists(os.path.join(str(voldir), 'volume-vol.%s' % victim))
    names = [s['name'] for s in run_module(snapshot_info, nfs_args(voldir, volume='vol'))['snapshots']]
    assert names == [s for s in SNAPSHOTS if s != victim]
    live = active_file(voldir, 'vol')
    sh('qemu-img', 'check', '-f', fmt_of(live), live)


def test_delete_every_snapshot_in_turn_keeps_the_rest(voldir, scratch):
    build_chain(voldir, 'raw')
    expected = point_in_time_digests(voldir, 'vol', scratch)
    for victim in ['s3', 's1', 's5', 's2', 's4']:
        assert run_module(snapshot, nfs_args(voldir, volume='vol', name=victim, state='absent'))['changed']
        del expected[victim]
        assert point_in_time_digests(voldir, 'vol', scratch) == expected
    assert read_info(str(voldir), 'vol') == {'active': 'volume-vol'}
    assert sorted(f for f in os.listdir(str(voldir)) if not f.startswith('volume-vol.stratum')) == \
        ['volume-vol', 'volume-vol.info']


def test_delete_after_growing_keeps_sizes_and_data(voldir, scratch):
    build_chain(voldir, 'raw', grow_at='s3')
    before = point_in_time_digests(voldir, 'vol', scratch)
    sizes = dict((s['name'], s['size']) for s in run_module(snapshot_info, nfs_args(voldir, volume='vol'))['snapshots'])
    assert sizes == {'s1': 4 << 20, 's2': 4 << 20, 's3': 6 << 20, 's4': 6 << 20, 's5': 6 << 20}
    for victim in ['s2', 's1']:
        assert run_module(snapshot, nfs_args(voldir, volume='vol', name=victim, state='absent'))['changed']
        del before[victim]
        assert point_in_time_digests(voldir, 'vol', scratch) == before


def test_clone_from_snapshot_and_volume_hold_that_data(voldir, scratch):
    build_chain(voldir, 'raw')
    digests = point_in_time_digests(voldir, 'vol', scratch)
    result = run_module(volume, nfs_args(voldir, name='restore', source_volume='vol', source_snapshot='s2'))
    assert result['changed'] and result['volume']['origin'] == {'volume': 'vol', 'snapshot': 's2'}, result
    assert image_digest(os.path.join(str(voldir), 'volume-restore'), 'raw', scratch) == digests['s2']
    result = run_module(volume, nfs_args(voldir, name='copy', source_volume='vol', format='qcow2', size='8M'))
    assert result['changed'] and result['volume']['size'] == 8 << 20, result
    listing = dict((v['name'], v) for v in run_module(volume_info, nfs_args(voldir))['volumes'])
    assert sorted(listing) == ['copy', 'restore', 'vol']
    assert listing['copy']['details']['format'] == 'qcow2'
    # the clone is independent: deleting the source leaves it intact
    assert run_module(volume, nfs_args(voldir, name='vol', state='absent', force=True))['changed']
    assert image_digest(os.path.join(str(voldir), 'volume-restore'), 'raw', scratch) == digests['s2']
    assert not [f for f in os.listdir(str(voldir)) if f == 'volume-vol' or f.startswith('volume-vol.')]
