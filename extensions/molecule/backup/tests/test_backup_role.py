# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks in the guest what the backup role left after the scenario's runs.

The expected content of every point in time is computed here from the writes the
scenario made (1 MiB of one byte at a MiB offset), not read from the collection.
"""

from __future__ import annotations

import calendar
import hashlib
import json

import pytest

MIB = 1 << 20
SIZE = 16 * MIB
#: the writes made before each day's run (prepare.yml, tick.yml, late.yml)
WRITES = {'manual': [(0x11, 0)], 'nightly-20300128': [(0x11, 0)]}
WRITES['nightly-20300130'] = WRITES['nightly-20300128'] + [(0x22, 2)]
WRITES['nightly-20300205'] = WRITES['nightly-20300130'] + [(0x33, 4)]
WRITES['nightly-20300206'] = WRITES['nightly-20300205'] + [(0x44, 6)]
#: daily 1, monthly 2: the newest day, and the newest of January (a run on 01-30 failed for the zvol)
KEPT = {'db-thin': {'manual', 'nightly-20300130', 'nightly-20300206'},
        'db-zfs': {'nightly-20300128', 'nightly-20300206'},
        'db-nfs': {'nightly-20300130', 'nightly-20300206'}}
SHARE_MOUNT = '/var/lib/stratum-storage/mnt/' + hashlib.md5(b'127.0.0.1:/srv/export/bk-volumes').hexdigest()


def expected_sha256(point):
    data = bytearray(SIZE)
    for byte, offset in WRITES[point]:
        data[offset * MIB:(offset + 1) * MIB] = bytes([byte]) * MIB
    return hashlib.sha256(bytes(data)).hexdigest()


def info(host, path):
    table = json.loads(host.file(path).content_string)
    table.pop('active')
    return table


@pytest.mark.parametrize('volume', sorted(KEPT))
def test_the_repository_keeps_what_the_grid_keeps(host, volume):
    assert set(info(host, '/srv/backups/volume-%s.info' % volume)) == KEPT[volume]


@pytest.mark.parametrize('volume,point', [(v, p) for v in sorted(KEPT) for p in sorted(KEPT[v])])
def test_each_backup_holds_its_point_in_time(host, volume, point):
    overlay = info(host, '/srv/backups/volume-%s.info' % volume)[point]
    image = json.loads(host.check_output('qemu-img info -U --output=json -f qcow2 /srv/backups/%s' % overlay))
    raw = '/tmp/verify-%s-%s.raw' % (volume, point)
    host.run_test('qemu-img convert -U -f qcow2 -O raw /srv/backups/%s %s', image['backing-filename'], raw)
    digest = host.check_output('sha256sum %s', raw).split()[0]
    host.run_test('rm -f %s', raw)
    assert digest == expected_sha256(point)


def test_the_role_left_only_the_incremental_base_of_its_snapshots(host):
    lvs = host.check_output('lvs --noheadings -o lv_name bk').split()
    assert sorted(lvs) == ['pool', 'volume-db-thin', 'volume-db-thin.manual', 'volume-db-thin.nightly-20300206',
                           'volume-db-thin.nightly-keep']
    assert host.check_output('zfs list -H -t snapshot -o name -r bk').split() == ['bk/volumes/db-zfs@manual']
    assert set(info(host, SHARE_MOUNT + '/volume-db-nfs.info')) == {'manual', 'nightly-20300206'}
    # the base holds the newest backup's point in time
    assert host.check_output('sha256sum /dev/bk/volume-db-thin.nightly-20300206').split()[0] == \
        expected_sha256('nightly-20300206')


def test_the_summary_file_and_the_textfile(host):
    summary = json.loads(host.file('/var/lib/stratum-storage/backup-summary.json').content_string)
    assert summary['repository'] == {'path': '/srv/backups'}
    assert sorted(summary['volumes']) == sorted(KEPT)
    noon = calendar.timegm((2030, 2, 6, 12, 0, 0))
    for volume, state in summary['volumes'].items():
        assert state['result'] == 'ok' and state['error'] is None
        assert state['newest_backup'] == 'nightly-20300206' and sorted(state['backups']) == sorted(
            KEPT[volume] - {'manual'})
        assert state['checksum'] == 'sha256:' + expected_sha256('nightly-20300206')
        assert state['size'] == SIZE and noon <= state['completed_epoch'] < noon + 3600
    metrics = {}
    for line in host.file('/var/lib/node-exporter/stratum-backup.prom').content_string.splitlines():
        if line and not line.startswith('#'):
            name, value = line.rsplit(' ', 1)
            metrics[name] = int(value)
    for volume, state in summary['volumes'].items():
        backend = {'db-thin': 'lvm', 'db-zfs': 'zfs', 'db-nfs': 'nfs'}[volume]
        labels = '{volume="%s",backend="%s"}' % (volume, backend)
        assert metrics['stratum_backup_ok' + labels] == 1
        assert metrics['stratum_backup_size_bytes' + labels] == SIZE
        assert metrics['stratum_backup_last_success_timestamp_seconds' + labels] == state['completed_epoch']
    assert len(metrics) == 12
