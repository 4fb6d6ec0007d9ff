# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A directory laid out by hand exactly as Cinder's NFS driver writes it is listed and managed."""

from __future__ import annotations

import json
import os

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, read_info, run_module, sh)

VOL = '3f2b5a4e-8c1d-4e7a-9b6f-0d2c4e6a8b10'
SNAPS = ['a1b2c3d4-0000-4000-8000-000000000001', 'a1b2c3d4-0000-4000-8000-000000000002',
         'a1b2c3d4-0000-4000-8000-000000000003', 'a1b2c3d4-0000-4000-8000-000000000004']


def build_cinder_volume(voldir):
    """Raw base, qcow2 overlays with relative backing names, UUID names, and the .info map."""
    directory = str(voldir)
    base = 'volume-%s' % VOL
    sh('qemu-img', 'create', '-q', '-f', 'raw', base, '2M', cwd=directory)
    qemu_write(os.path.join(directory, base), 'raw', 0x01, 0)
    backing, backing_fmt, info = base, 'raw', {'active': base}
    for i, snap in enumerate(SNAPS, start=2):
        overlay = '%s.%s' % (base, snap)
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', backing_fmt, '-b', backing, overlay, cwd=directory)
        info[snap] = overlay
        info['active'] = overlay
        qemu_write(os.path.join(directory, overlay), 'qcow2', i, 0)
        qemu_write(os.path.join(directory, overlay), 'qcow2', 0x20 + i, i * 65536)
        backing, backing_fmt = overlay, 'qcow2'
    with open(os.path.join(directory, '%s.info' % base), 'w') as handle:
        json.dump(info, handle, indent=1, sort_keys=True)
    return info


def test_cinder_directory_is_listed(voldir):
    build_cinder_volume(voldir)
    volumes = run_module(volume_info, nfs_args(voldir))['volumes']
    assert [v['name'] for v in volumes] == [VOL]
    vol = volumes[0]
    assert vol['status'] == 'available' and vol['size'] == 2 << 20 and vol['backend'] == 'nfs'
    assert vol['created'] is None and vol['origin'] is None
    assert vol['details']['format'] == 'raw' and vol['details']['active_file'] == 'volume-%s.%s' % (VOL, SNAPS[-1])
    snaps = run_module(snapshot_info, nfs_args(voldir))['snapshots']
    assert [s['name'] for s in snaps] == SNAPS
    assert [s['parent'] for s in snaps] == [None] + SNAPS[:-1]
    assert all(s['status'] == 'available' and s['size'] == 2 << 20 and s['created'].endswith('Z') for s in snaps)
    # Cinder keeps no snapshot UUID in the directory, so the identity is unknown
    assert snaps[0]['details'] == {'file': 'volume-%s.%s' % (VOL, SNAPS[0]), 'image': 'volume-%s' % VOL,
                                   'image_format': 'raw', 'uuid': None, 'temporary': False, 'holds': 0}
    assert set(snaps[0]) == {'name', 'volume', 'backend', 'status', 'size', 'created', 'parent', 'details'}


def test_cinder_snapshots_are_deleted_the_same_way(voldir, scratch):
    build_cinder_volume(voldir)
    directory = str(voldir)

    def digests():
        found = {}
        for snap in run_module(snapshot_info, nfs_args(voldir, volume=VOL))['snapshots']:
            found[snap['name']] = image_digest(os.path.join(directory, snap['details']['image']),
                                               snap['details']['image_format'], scratch)
        info = read_info(directory, VOL)
        found['live'] = image_digest(os.path.join(directory, info['active']),
                                     'raw' if info['active'] == 'volume-%s' % VOL else 'qcow2', scratch)
        return found

    expected = digests()
    assert len(set(expected.values())) == 5
    for victim in [SNAPS[1], SNAPS[3], SNAPS[0]]:
        assert run_module(snapshot, nfs_args(voldir, volume=VOL, name=victim, state='absent'))['changed']
        del expected[victim]
        assert digests() == expected
    info = read_info(directory, VOL)
    assert info == {'active': 'volume-%s.%s' % (VOL, SNAPS[2]), SNAPS[2]: 'volume-%s.%s' % (VOL, SNAPS[2])}
    # the file Cinder reads next keeps a relative backing name and its backing format
    chain = json.loads(sh('qemu-img', 'info', '--output=json', '-U', info['active'], cwd=directory))
    assert chain['backing-filename'] == 'volume-%s' % VOL
    assert chain['backing-filename-format'] == 'raw'


def test_our_snapshots_are_in_cinder_format(voldir):
    assert run_module(volume, nfs_args(voldir, name=VOL, size='1M'))['changed']
    for snap in SNAPS[:2]:
        assert run_module(snapshot, nfs_args(voldir, volume=VOL, name=snap))['changed']
    info = read_info(str(voldir), VOL)
    overlays = ['volume-%s.%s' % (VOL, s) for s in SNAPS[:2]]
    assert info == {'active': overlays[1], SNAPS[0]: overlays[0], SNAPS[1]: overlays[1]}
    top = json.loads(sh('qemu-img', 'info', '--output=json', '-U', overlays[1], cwd=str(voldir)))
    assert top['backing-filename'] == overlays[0] and top['format'] == 'qcow2'
