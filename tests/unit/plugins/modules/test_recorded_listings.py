# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LVM and ZFS backends on listings recorded on a test host (``make testhost-record``).

The fixtures are what ``lvs`` and ``zfs list`` printed for a state made with the
modules: thick and thin volumes, a COW snapshot, an overflowed one, thin snapshots,
a thin clone, an inactive thin volume; a zvol with a snapshot that a clone keeps
(destroyed with ``-d``), a held snapshot and the clone. A change of the listing
columns fails here until the fixtures are recorded again.
"""

from __future__ import annotations

import json
import os

from ansible_collections.stratum.storage.plugins.modules import snapshot_info, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import CannedHost, run_canned

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding='utf-8') as handle:
        return handle.read()


COLUMNS = json.loads(fixture('recorded_columns.json'))
LVM = dict(backend='lvm', lvm={'vg': 'rec'})
ZFS = dict(backend='zfs', zfs={'parent': 'rec/volumes'})


def lvs(argv):
    assert argv[argv.index('-o') + 1].split(',') == COLUMNS['lvs'], 'record the fixtures again'
    assert argv[-1] == 'rec'
    return 0, fixture('lvs_recorded.json'), ''


def zfs(argv):
    assert argv[1] == 'list' and argv[argv.index('-o') + 1].split(',') == COLUMNS['zfs'], 'record the fixtures again'
    assert argv[-1] == 'rec/volumes'
    return 0, fixture('zfs_list_recorded.txt'), ''


def by_name(records):
    return dict(((r.get('volume'), r['name']) if 'volume' in r else r['name'], r) for r in records)


def test_recorded_lvm_volumes():
    host = CannedHost(lvs=lvs)
    volumes = by_name(run_canned(volume_info, LVM, host)['volumes'])
    assert sorted(volumes) == ['tclone1', 'thick1', 'thin1', 'thin2']  # the thin pool is not ours
    assert host.names() == ['lvs']
    assert volumes['thick1']['size'] == 16 << 20 and volumes['thick1']['details']['type'] == 'thick'
    assert volumes['thin1']['details']['type'] == 'thin' and volumes['thin1']['size'] == 24 << 20
    assert volumes['tclone1']['origin'] == {'volume': 'thin1', 'snapshot': 's1'}
    assert volumes['thin2']['details']['active'] is False and volumes['thin1']['details']['active'] is True
    assert all(v['status'] == 'available' for v in volumes.values())
    assert volumes['thin1']['created'] == '2026-11-24T03:18:06Z'


def test_recorded_lvm_snapshots():
    snapshots = by_name(run_canned(snapshot_info, LVM, CannedHost(lvs=lvs))['snapshots'])
    assert sorted(snapshots) == [('thick1', 's1'), ('thick1', 'tiny'), ('thin1', 's1'), ('thin1', 's2')]
    assert snapshots['thick1', 's1']['status'] == 'available' and snapshots['thick1', 's1']['details']['type'] == 'cow'
    assert snapshots['thick1', 'tiny']['status'] == 'error'
    assert 'overflowed' in snapshots['thick1', 'tiny']['details']['reason']
    assert snapshots['thick1', 'tiny']['parent'] == 's1'
    assert snapshots['thin1', 's1']['details']['type'] == 'thin' and snapshots['thin1', 's1']['parent'] is None
    assert snapshots['thin1', 's2']['parent'] == 's1'


def test_recorded_zfs_volumes_and_snapshots():
    host = CannedHost(zfs=zfs)
    volumes = by_name(run_canned(volume_info, ZFS, host)['volumes'])
    assert sorted(volumes) == ['z1', 'zclone1'] and host.names() == ['zfs']
    assert volumes['z1']['size'] == 16 << 20 and volumes['z1']['details']['volblocksize'] == 16384
    assert volumes['z1']['details']['sparse'] is False and volumes['zclone1']['details']['sparse'] is True
    assert volumes['zclone1']['origin'] == {'volume': 'z1', 'snapshot': 's1'}
    snapshots = by_name(run_canned(snapshot_info, ZFS, CannedHost(zfs=zfs))['snapshots'])
    assert sorted(snapshots) == [('z1', 's1'), ('z1', 's2')]
    kept = snapshots['z1', 's1']
    assert kept['status'] == 'pending_delete' and kept['details']['clones'] == ['rec/volumes/zclone1']
    held = snapshots['z1', 's2']
    assert held['status'] == 'available' and held['details']['holds'] == 1 and held['parent'] == 's1'
