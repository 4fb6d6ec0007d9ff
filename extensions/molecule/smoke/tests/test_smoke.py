# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks in the guest what the converge made with the collection's modules."""

from __future__ import annotations

import hashlib
import json

SHARE = '127.0.0.1:/srv/export/smoke'
MOUNT = '/var/lib/stratum-storage/mnt/' + hashlib.md5(SHARE.encode()).hexdigest()


def test_lvm_thin_volume_and_snapshot(host):
    report = json.loads(host.check_output(
        'lvs --reportformat json --units b --nosuffix -o lv_name,lv_attr,lv_size,pool_lv,origin,lv_tags smoke'))
    volumes = dict((lv['lv_name'], lv) for lv in report['report'][0]['lv'])
    data, nightly = volumes['volume-data'], volumes['volume-data.nightly']
    assert data['lv_attr'].startswith('V') and data['pool_lv'] == 'pool' and data['lv_size'] == str(32 << 20)
    assert 'stratum_volume=data' in data['lv_tags'].split(',')
    assert nightly['origin'] == 'volume-data' and nightly['lv_attr'][4] == 'a'  # active thin snapshot
    assert 'stratum_snapshot=nightly' in nightly['lv_tags'].split(',')


def test_zfs_zvol_and_snapshot(host):
    assert host.check_output('zfs get -H -p -o value volsize smoke/volumes/data') == str(32 << 20)
    assert host.check_output('zfs list -H -t snapshot -o name -r smoke/volumes') == 'smoke/volumes/data@nightly'


def test_nfs_share_mounted_by_the_module_holds_a_cinder_chain(host):
    mount = host.mount_point(MOUNT)
    assert mount.exists and mount.filesystem.startswith('nfs')
    info = json.loads(host.file(MOUNT + '/volume-data.info').content_string)
    assert info == {'active': 'volume-data.nightly', 'nightly': 'volume-data.nightly'}
    overlay = json.loads(host.check_output('qemu-img info -U --output=json %s/volume-data.nightly' % MOUNT))
    assert overlay['format'] == 'qcow2' and overlay['backing-filename'] == 'volume-data'
    assert overlay['virtual-size'] == 32 << 20
    host.run_test('qemu-img check -q -f qcow2 %s/volume-data.nightly' % MOUNT)
    assert host.file('/srv/export/smoke/volume-data').exists
