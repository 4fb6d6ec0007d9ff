# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A thin LVM replica whose receiving run is killed while the volume is replaced by the new snapshot.

The receiver runs against a volume group kept in memory: its LVs, their tags and
their contents change as lvcreate, lvremove and lvchange would change them.
"""

from __future__ import annotations

import io
import json

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _files, _lvm, _mover, _receiver
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult
from ansible_collections.stratum.storage.tests.unit.plugins.module_utils.test_replica_planner import (
    Image, _Opened, _stream)
from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_lvm_canned as lvm

SIZE = 1 << 20
PLACE = 'vg0/pool'


class Killed(BaseException):
    """The receiving process dies here: nothing after this command runs."""


class VolumeGroup:
    """vg0 with thin pool ``pool``: LV rows as ``lvs`` prints them, and each LV's data."""

    def __init__(self):
        self.rows = {'pool': dict(lvm.POOL)}
        self.data = {}
        self.commands = []
        self.kill = None  # a predicate on argv: the receiver is killed instead of running it

    def add(self, name, tags, origin=''):
        row = lvm.lv(name, SIZE, tags=tags, attr='Vwi-a-tz--', segtype='thin', origin=origin, pool='pool')
        self.rows[name] = row
        self.data[name] = Image(SIZE)
        if origin:
            self.data[name].data[:] = self.data[origin].data
        return row

    def tags(self, name):
        return [t for t in self.rows[name]['lv_tags'].split(',') if t]

    def run(self, argv, check=True, error=None, **kwargs):
        argv = list(argv)
        if self.kill is not None and self.kill(argv):
            raise Killed(' '.join(argv))
        self.commands.append(argv)
        if argv[0] == 'lvs' and 'data_percent,metadata_percent' in argv:
            out = {'report': [{'lv': [{'data_percent': '10.00', 'metadata_percent': '5.00'}]}]}
        elif argv[0] == 'lvs':
            out = {'report': [{'lv': list(self.rows.values())}]}
        elif argv[0] == 'lvcreate':
            name = argv[argv.index('-n') + 1]
            assert name not in self.rows, 'lvcreate: %s exists' % name
            tags = [argv[i + 1] for i, a in enumerate(argv) if a == '--addtag']
            self.add(name, tags, origin=argv[-1].split('/')[1] if '-s' in argv else '')
            return CommandResult(argv, 0, '', '')
        elif argv[0] == 'lvremove':
            for lv in argv[2:]:
                del self.rows[lv.split('/')[1]]
            return CommandResult(argv, 0, '', '')
        elif argv[0] == 'lvchange':
            name = argv[-1].split('/')[1]
            tags = self.tags(name)
            for i, a in enumerate(argv):
                if a == '--addtag' and argv[i + 1] not in tags:
                    tags.append(argv[i + 1])
                elif a == '--deltag':
                    tags.remove(argv[i + 1])
            self.rows[name]['lv_tags'] = ','.join(tags)
            return CommandResult(argv, 0, '', '')
        else:
            raise AssertionError('unexpected command %r' % argv)
        return CommandResult(argv, 0, json.dumps(out), '')

    def writer(self, path, size, what, skip_zeros=False):
        return _Opened(self.data[path.rsplit('/', 1)[1]])


@pytest.fixture
def group(tmp_path, monkeypatch):
    vg = VolumeGroup()
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    monkeypatch.setattr(_mover, 'BlockWriter', vg.writer)

    def changed_ranges(self, base, snapshot):  # thin_delta, from the contents
        a, b = vg.data[base.details['lv'].split('/')[1]], vg.data[snapshot.details['lv'].split('/')[1]]
        return [] if a.data == b.data else [(0, SIZE)]
    monkeypatch.setattr(_lvm.LvmBackend, 'changed_ranges', changed_ranges)
    # volume v holds replica s1 (identity i1)
    vg.add('volume-v', ['stratum_volume=v', 'stratum_created=20261120T000000.000000Z'])
    vg.data['volume-v'].write(0, b'\x01' * 4096)
    vg.add('volume-v.s1', ['stratum_volume=v', 'stratum_snapshot=s1', 'stratum_created=20261121T000000.000000Z',
                           'stratum_identity=i1'], origin='volume-v')
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'lvm': [PLACE]}))
    vg.config = _receiver.load_config(str(config))
    return vg


def ask(vg, *words):
    return _receiver.serve(list(words[:1]) + ['lvm', PLACE, 'v'] + list(words[1:]), vg.config, None, vg)


def receive(vg, name, identity, base, content):
    source = Image(SIZE)
    source.write(0, content)
    stream = io.BufferedReader(io.BytesIO(_stream(source, SIZE, [(0, len(content))])))
    return _receiver.serve(['receive', 'lvm', PLACE, 'v', name, identity, base, 'new'], vg.config, stream, vg,
                           io.BytesIO())


def listed(answer):
    return [(s['name'], s['status'], s['details'].get('identity')) for s in answer['snapshots']]


KILLS = {
    'after-complete-mark': lambda argv: argv[0] == 'lvremove',
    'after-old-volume-removed': lambda argv: argv[0] == 'lvcreate' and argv[argv.index('-n') + 1] == 'volume-v',
    'after-new-volume-made': lambda argv: argv[0] == 'lvchange' and '--deltag' in argv,
}


@pytest.mark.parametrize('kill', sorted(KILLS))
@pytest.mark.parametrize('then', ['next-replica', 'same-replica-then-delete'])
def test_a_replacement_cut_by_a_kill_is_finished_by_the_next_change(group, kill, then):
    vg = group
    group.kill = KILLS[kill]
    with pytest.raises(Killed):
        receive(vg, 's2', 'i2', 'i1', b'\x02' * 8192)
    vg.kill = None
    # s2's data is complete: it lists available, the volume as it is (or inbound while it has no LV),
    # nothing is cut and nothing was written since the newest replica, so the source goes on from s2
    info = ask(vg, 'info')
    assert listed(info) == [('s1', 'available', 'i1'), ('s2', 'available', 'i2')]
    assert info['inbound'] is None and info['written'] == 0
    assert info['volume']['status'] == ('inbound' if kill == 'after-old-volume-removed' else 'available')
    if then == 'next-replica':
        answer = receive(vg, 's3', 'i3', 'i2', b'\x03' * 4096 + b'\x02' * 4096)
        assert answer['snapshot']['name'] == 's3' and answer['snapshot']['status'] == 'available'
        expected = [('s1', 'available', 'i1'), ('s2', 'available', 'i2'), ('s3', 'available', 'i3')]
        content = b'\x03' * 4096 + b'\x02' * 4096
    else:
        # the source finds s2 there and sends nothing; a delete (retention) of s1 finishes the replacement
        assert ask(vg, 'delete', 's1', 'i1') == {'deleted': 's1'}
        expected, content = [('s2', 'available', 'i2')], b'\x02' * 8192
    info = ask(vg, 'info')
    assert listed(info) == expected and info['volume']['status'] == 'available' and info['written'] == 0
    newest = 'volume-v.' + expected[-1][0]
    assert vg.rows['volume-v']['origin'] == newest  # the volume is a thin snapshot of the newest replica
    assert bytes(vg.data['volume-v'].data[:8192]) == content
    assert not [t for row in vg.rows.values() for t in row['lv_tags'].split(',') if 'inbound' in t]


def test_an_uncut_replica_marks_the_data_complete_before_it_replaces_the_volume(group):
    vg = group
    receive(vg, 's2', 'i2', 'i1', b'\x02' * 8192)
    done = vg.commands[[i for i, c in enumerate(vg.commands) if c[:2] == ['lvchange', '--addtag']][-1]:]
    # mark complete, read again, old volume out, new volume in, marks off (then the answer's listing)
    assert [c[0] for c in done] == ['lvchange', 'lvs', 'lvremove', 'lvcreate', 'lvchange', 'lvs']
    # before it: one listing for the records, one for the state of the replica; then the pool, once made
    first = vg.commands[:[i for i, c in enumerate(vg.commands) if c[0] == 'lvcreate'][0]]
    assert [c[0] for c in first] == ['lvs', 'lvs']
    assert done[0][1:] == ['--addtag', 'stratum_inbound_done=yes', 'vg0/volume-v.s2']
    assert vg.rows['volume-v']['origin'] == 'volume-v.s2'
    assert sorted(t.split('=')[0] for t in vg.tags('volume-v.s2')) == [
        'stratum_created', 'stratum_identity', 'stratum_snapshot', 'stratum_volume']


def killed_in(vg, kill):
    vg.kill = KILLS[kill]
    with pytest.raises(Killed):
        receive(vg, 's2', 'i2', 'i1', b'\x02' * 8192)
    vg.kill = None


def test_a_volume_written_after_a_cut_replacement_is_kept_and_the_next_replica_refused(group):
    vg = group
    killed_in(vg, 'after-complete-mark')
    vg.data['volume-v'].write(65536, b'\x09' * 4096)  # the volume is used on the target meanwhile
    info = ask(vg, 'info')
    assert info['replacing'] == 's2' and info['written'] == SIZE  # written since s1, the replica's base
    uuid = vg.rows['volume-v']['lv_uuid']
    vg.commands.clear()
    with pytest.raises(Exception, match='changed since the common snapshot s2'):
        receive(vg, 's3', 'i3', 'i2', b'\x03' * 8192)
    assert vg.rows['volume-v']['lv_uuid'] == uuid and vg.data['volume-v'].read(65536, 4096) == b'\x09' * 4096
    assert not [c for c in vg.commands if c[0] in ('lvremove', 'lvcreate')]
    info = ask(vg, 'info')
    assert listed(info) == [('s1', 'available', 'i1'), ('s2', 'available', 'i2')] and info['replacing'] is None


def test_an_lv_in_the_volume_s_place_that_is_not_ours_is_left_alone(group):
    vg = group
    killed_in(vg, 'after-old-volume-removed')
    vg.rows['volume-v'] = lvm.lv('volume-v', SIZE, attr='Vwi-a-tz--', segtype='thin', pool='pool')  # made by hand
    vg.data['volume-v'] = Image(SIZE, fill=7)
    vg.commands.clear()
    assert ask(vg, 'abort') == {'aborted': 'v'}
    assert not [c for c in vg.commands if c[0] in ('lvremove', 'lvcreate')]
    assert vg.rows['volume-v']['lv_tags'] == '' and vg.data['volume-v'].read(0, 4) == b'\x07' * 4
    assert not [t for t in vg.tags('volume-v.s2') if 'inbound' in t]


def test_only_the_newest_snapshot_with_every_mark_of_a_receive_replaces_the_volume(group):
    vg = group
    receive(vg, 's2', 'i2', 'i1', b'\x02' * 8192)
    tags = vg.tags('volume-v.s1')
    vg.rows['volume-v.s1']['lv_tags'] = ','.join(tags + ['stratum_inbound=s1', 'stratum_inbound_identity=i1',
                                                         'stratum_inbound_base=-', 'stratum_inbound_done=yes'])
    info = ask(vg, 'info')
    assert info['replacing'] is None and info['written'] == 0
    vg.commands.clear()
    ask(vg, 'abort')
    assert not [c for c in vg.commands if c[0] in ('lvremove', 'lvcreate')]
    assert vg.rows['volume-v']['origin'] == 'volume-v.s2' and vg.data['volume-v'].read(0, 4) == b'\x02' * 4


def canned(vg):
    from ansible_collections.stratum.storage.tests.unit.helpers import CannedHost

    def answer(argv):
        result = vg.run([argv[0].rsplit('/', 1)[-1]] + list(argv[1:]))
        return result.rc, result.stdout, result.stderr
    return CannedHost(lvs=answer, lvcreate=answer, lvremove=answer, lvchange=answer)


def test_the_snapshot_and_volume_modules_finish_a_cut_replacement_before_they_change_anything(group):
    from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
    from ansible_collections.stratum.storage.tests.unit.helpers import run_canned
    vg = group
    killed_in(vg, 'after-old-volume-removed')
    args = dict(backend='lvm', lvm={'vg': 'vg0', 'thin_pool': 'pool'})
    # check mode changes nothing and plans no activation of an LV that is not there
    check = run_canned(volume, dict(args, name='v', size=SIZE), canned(vg), check=True)
    assert not check['failed'] and not [a for a in check['actions'] if 'activate' in a], check
    assert 'volume-v' not in vg.rows
    result = run_canned(snapshot, dict(args, volume='v', name='s2', state='absent'), canned(vg))
    assert not result['failed'] and result['changed'], result
    assert result['actions'][0] == 'finish what the receive of replica snapshot s2 left on volume v'
    assert 'volume-v.s2' not in vg.rows and vg.data['volume-v'].read(0, 8192) == b'\x02' * 8192
    assert [s['name'] for s in ask(vg, 'info')['snapshots']] == ['s1']


@pytest.mark.parametrize('name, mode', [('s2', 'none'), ('s3', 'incremental')])
def test_the_source_plans_to_finish_a_cut_replacement(name, mode):
    from ansible_collections.stratum.storage.plugins.module_utils._replica import plan_replica
    from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot
    chain = [Snapshot(name=n, volume='v', backend='lvm', status='available', size=SIZE, created=None, parent=None,
                      details={'uuid': 'i' + n[1]}) for n in ('s1', 's2', 's3')]
    target = {'volume': {'name': 'v', 'status': 'inbound'}, 'replacing': 's2', 'written': 0, 'inbound': None,
              'snapshots': [{'name': 's1', 'status': 'available', 'identity': 'i1'},
                            {'name': 's2', 'status': 'available', 'identity': 'i2'}]}
    plan = plan_replica(chain, next(s for s in chain if s.name == name), lambda s: s.details['uuid'], target,
                        'lvm vg0/pool on peer', 'v')
    assert plan.mode == mode and plan.abort  # the abort request finishes the replacement first
    assert plan.actions[0] == 'finish what the receive of replica snapshot s2 left on volume v on lvm vg0/pool on peer'
    assert not [a for a in plan.actions if a.startswith('abort')]
    if mode == 'incremental':
        assert plan.base == 's2'


def test_a_snapshot_taken_on_the_target_during_a_cut_does_not_stop_the_replacement(group):
    from ansible_collections.stratum.storage.plugins.modules import snapshot
    from ansible_collections.stratum.storage.tests.unit.helpers import run_canned
    vg = group
    vg.kill = lambda argv: argv[0] == 'lvchange' and 'stratum_inbound_done=yes' in argv  # cut before it is complete
    with pytest.raises(Killed):
        receive(vg, 's2', 'i2', 'i1', b'\x02' * 8192)
    vg.kill = None
    assert ask(vg, 'info')['inbound']['snapshot'] == 's2'
    # meanwhile someone takes a snapshot of the target volume (still at s1): it is newer than s2
    local = run_canned(snapshot, dict(backend='lvm', lvm={'vg': 'vg0', 'thin_pool': 'pool'}, volume='v', name='mine'),
                       canned(vg))
    assert local['changed'] and not local['failed'], local
    source = Image(SIZE)
    source.write(0, b'\x02' * 8192)
    stream = io.BufferedReader(io.BytesIO(_stream(source, SIZE, None, hashes=True, target=vg.data['volume-v.s2'])))
    resumed = _receiver.serve(['receive', 'lvm', PLACE, 'v', 's2', 'i2', 'i1', 'resume'], vg.config, stream, vg,
                              io.BytesIO())
    assert resumed['snapshot']['status'] == 'available' and resumed['bytes_written'] == 0
    assert vg.rows['volume-v']['origin'] == 'volume-v.s2' and vg.data['volume-v'].read(0, 8192) == b'\x02' * 8192
    assert not [t for row in vg.rows.values() for t in row['lv_tags'].split(',') if 'inbound' in t]
    assert vg.data['volume-v.mine'].read(0, 4096) == b'\x01' * 4096  # the snapshot keeps what it was taken of


def test_check_mode_of_a_module_reports_the_finish_and_changes_nothing(group):
    from ansible_collections.stratum.storage.plugins.modules import snapshot
    from ansible_collections.stratum.storage.tests.unit.helpers import run_canned
    vg = group
    killed_in(vg, 'after-complete-mark')
    args = dict(backend='lvm', lvm={'vg': 'vg0', 'thin_pool': 'pool'}, volume='v', name='s1', state='absent')
    rows, ran = json.dumps(vg.rows, sort_keys=True), len(vg.commands)
    check = run_canned(snapshot, args, canned(vg), check=True)
    assert json.dumps(vg.rows, sort_keys=True) == rows and [c[0] for c in vg.commands[ran:]] == ['lvs']
    real = run_canned(snapshot, args, canned(vg))
    assert check['actions'] == real['actions'] == [
        'finish what the receive of replica snapshot s2 left on volume v', 'delete snapshot s1 of volume v'], real
    assert vg.rows['volume-v']['origin'] == 'volume-v.s2' and 'volume-v.s1' not in vg.rows
    assert not run_canned(snapshot, args, canned(vg))['changed']


def test_a_first_replica_killed_before_its_marks_went_is_listed_complete_and_finished(group):
    from ansible_collections.stratum.storage.plugins.module_utils._replica import plan_replica
    from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot
    vg = group
    vg.kill = lambda argv: argv[0] == 'lvchange' and '--deltag' in argv and argv[-1] == 'vg0/volume-w'
    source = Image(SIZE)
    source.write(0, b'\x05' * 4096)
    stream = io.BufferedReader(io.BytesIO(_stream(source, SIZE, None)))
    with pytest.raises(Killed):  # the snapshot is taken, the volume's marks are not dropped yet
        _receiver.serve(['receive', 'lvm', PLACE, 'w', 's1', 'j1', '-', 'new'], vg.config, stream, vg, io.BytesIO())
    vg.kill = None
    info = _receiver.serve(['info', 'lvm', PLACE, 'w'], vg.config, None, vg)
    assert info['volume']['status'] == 'available' and info['inbound'] is None and info['replacing'] == 's1'
    assert listed(info) == [('s1', 'available', 'j1')]
    chain = [Snapshot(name='s1', volume='w', backend='lvm', status='available', size=SIZE, created=None, parent=None,
                      details={'uuid': 'j1'})]
    plan = plan_replica(chain, chain[0], lambda s: s.details['uuid'], info, 'lvm vg0/pool on peer', 'w')
    assert plan.mode == 'none' and plan.abort and plan.actions[0].startswith('finish what the receive of replica')
    assert _receiver.serve(['abort', 'lvm', PLACE, 'w'], vg.config, None, vg) == {'aborted': 'w'}
    info = _receiver.serve(['info', 'lvm', PLACE, 'w'], vg.config, None, vg)
    assert info['replacing'] is None and listed(info) == [('s1', 'available', 'j1')]
    assert not [t for t in vg.tags('volume-w') if 'inbound' in t] and vg.data['volume-w'].read(0, 4) == b'\x05' * 4
