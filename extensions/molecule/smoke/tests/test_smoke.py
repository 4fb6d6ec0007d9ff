# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks in the guest that the backends the collection needs really work there."""

from __future__ import annotations

import json


def test_thin_pool_volume_group_works(host):
    report = json.loads(host.check_output('lvs --reportformat json --units b --nosuffix -o lv_name,lv_attr,lv_size,pool_lv smoke'))
    volumes = dict((lv['lv_name'], lv) for lv in report['report'][0]['lv'])
    assert volumes['pool']['lv_attr'].startswith('t')
    assert volumes['thin1']['lv_attr'].startswith('V') and volumes['thin1']['pool_lv'] == 'pool'
    # a thin snapshot of the thin volume can be made, activated and read
    host.run_test('lvcreate -q -s -n smoke-check smoke/thin1')
    try:
        host.run_test('lvchange -q -ay -K smoke/smoke-check')
        assert host.run('dumpe2fs -h /dev/smoke/smoke-check').rc == 0
    finally:
        host.run_test('lvremove -q -y smoke/smoke-check')


def test_zpool_is_online(host):
    assert host.check_output('zpool list -H -o health smoke') == 'ONLINE'
    host.run_test('zfs create -V 64M smoke/vol1')
    try:
        host.run_test('zfs snapshot smoke/vol1@s1')
        assert 'smoke/vol1@s1' in host.check_output('zfs list -H -t snapshot -o name')
    finally:
        host.run_test('zfs destroy -r smoke/vol1')


def test_nfs_export_is_mounted(host):
    mount = host.mount_point('/mnt/export')
    assert mount.exists and mount.filesystem.startswith('nfs')
    host.run_test('qemu-img create -q -f qcow2 /mnt/export/smoke.qcow2 16M')
    try:
        assert host.file('/srv/export/smoke.qcow2').exists
    finally:
        host.run_test('rm -f /mnt/export/smoke.qcow2')
