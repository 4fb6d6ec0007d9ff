# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication of nfs (qcow2) volumes between two local directories, with the real qemu-img and qemu-nbd.

The peer is the receiver itself, started as the SSH forced command would start it
(``SSH_ORIGINAL_COMMAND``), in a child process with its own configuration file;
only the ``ssh`` hop is left out (the test hosts run it with ssh).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _mover, _nfs, _receiver, _replica
from ansible_collections.stratum.storage.plugins.modules import replica, snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, run_module, tree_state)
from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import MiB

ROOT = str(Path(_receiver.__file__).resolve().parents[5])


@pytest.fixture
def peer(tmp_path, monkeypatch):
    """A target directory served by the receiver in a child process, as ``argv`` of the Peer."""
    directory = tmp_path / 'replicas'
    directory.mkdir()
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'nfs': [str(directory)]}))

    def argv(self, words, stdin=True):
        command = ' '.join(_replica.shlex.quote(str(w)) for w in words)
        return ['env', 'SSH_ORIGINAL_COMMAND=%s' % command, 'PYTHONPATH=%s' % ROOT, sys.executable, '-c',
                'import sys; from ansible_collections.stratum.storage.plugins.module_utils._receiver import main; '
                'sys.exit(main(["--config", %r]))' % str(config)]
    monkeypatch.setattr(_replica.Peer, 'argv', argv)
    return str(directory)


def run_replica(source, peer, snap, check=False, **extra):
    target = extra.pop('target', None) or {'nfs': {'path': peer}}
    args = nfs_args(source.directory, volume='v', snapshot=snap, target=dict(target, host='peer'), **extra)
    return run_module(replica, args, check=check)


def target_snapshots(peer):
    return dict((s['name'], s) for s in run_module(snapshot_info, nfs_args(peer, volume='v'))['snapshots'])


def content(directory, record, scratch):
    return image_digest(os.path.join(directory, record['details']['image']), record['details']['image_format'],
                        scratch)


def test_full_then_incrementals_send_the_changes_and_match_the_source(source, peer, scratch):
    source.create(size='4M')
    source.write(0x11, 0, '1M')
    source.snapshot('s1')
    check = run_replica(source, peer, 's1', check=True)
    assert check['changed'] and check['replica']['status'] == 'available' and os.listdir(peer) == []

    full = run_replica(source, peer, 's1')
    assert full['changed'] and not full.get('failed'), full
    assert full['replica']['details']['base'] is None and not full['replica']['details']['resumed']
    # the first send carries the data clusters; zero clusters travel as 13-byte records
    assert MiB < full['replica']['details']['bytes_sent'] < MiB + 64 * 13 + 4096
    listed = target_snapshots(peer)
    mine = source.snapshots()['s1']
    assert listed['s1']['status'] == 'available' and listed['s1']['details']['uuid'] == mine['details']['uuid']
    assert content(peer, listed['s1'], scratch) == source.digest('s1')
    # the listing of the target's snapshots comes back with the replica, as snapshot_info lists them there
    assert full['replicas'] == [dict(listed['s1'])]
    assert full['replica']['created'] == mine['created'] == listed['s1']['created']
    # the source snapshot lists the hold that the replica put on it
    assert mine['details']['holds'] == 1
    again = run_replica(source, peer, 's1')
    assert again['changed'] is False and again['replicas'] == [listed['s1']]

    source.write(0x22, '2M', '256k')
    source.snapshot('s2')
    incr = run_replica(source, peer, 's2')
    assert incr['replica']['details']['base'] == 's1' and incr['replica']['parent'] == 's1'
    assert 256 * 1024 <= incr['replica']['details']['bytes_sent'] <= 256 * 1024 * 1.1
    listed = target_snapshots(peer)
    assert content(peer, listed['s2'], scratch) == source.digest('s2')
    assert content(peer, listed['s1'], scratch) == source.digest('s1')
    # the target volume reads as the newest replica
    assert image_digest(os.path.join(peer, 'volume-v.s2'), 'qcow2', scratch) == source.digest('s2')
    assert [s['name'] for s in incr['replicas']] == ['s1', 's2'] and incr['replicas'][1] == listed['s2']
    # the hold moved to the newest replicated snapshot
    assert dict((n, s['details']['holds']) for n, s in source.snapshots().items()) == {'s1': 0, 's2': 1}

    gone = run_replica(source, peer, 's1', state='absent')
    assert gone['changed'] and gone['replica'] is None and [s['name'] for s in gone['replicas']] == ['s2']
    assert sorted(target_snapshots(peer)) == ['s2']


def cut_first_replica(source, peer, fill):
    """Replicate a new 4 MiB snapshot s1 (each MiB filled from ``fill`` on), the connection cut after 2 MiB."""
    source.create(size='4M')
    for n in range(4):
        source.write(fill + n, '%dk' % (n * 1024), '1M')
    source.snapshot('s1')
    real_write = _mover.Counted.write

    def cut(self, data):
        if self.count > 2 * MiB:
            raise BrokenPipeError(32, 'Broken pipe')
        real_write(self, data)
    with mock.patch.object(_mover.Counted, 'write', cut):
        return run_replica(source, peer, 's1')


def test_a_cut_transfer_is_listed_inbound_and_resumes_without_sending_again(source, peer, scratch):
    failed = cut_first_replica(source, peer, 0x30)
    assert failed['failed'] and failed['bytes_sent'] > 2 * MiB, failed
    listed = target_snapshots(peer)
    assert listed['s1']['status'] == 'inbound'
    volumes = run_module(volume_info, nfs_args(peer, name='v'))
    assert volumes['volumes'][0]['status'] == 'inbound'
    clone = run_module(volume, nfs_args(peer, name='copy', source_volume='v', source_snapshot='s1'))
    assert clone['failed'] and 'its status is inbound' in clone['msg']

    resumed = run_replica(source, peer, 's1')
    assert not resumed.get('failed'), resumed
    assert resumed['changed'] and resumed['replica']['details']['resumed'], resumed
    assert failed['bytes_sent'] + resumed['replica']['details']['bytes_sent'] <= 4 * MiB * 1.1
    listed = target_snapshots(peer)
    assert listed['s1']['status'] == 'available'
    assert content(peer, listed['s1'], scratch) == source.digest('s1')


def test_a_client_that_goes_silent_is_cut_after_idle_seconds_and_resumes(source, peer, scratch):
    config = Path(peer).parent / 'receiver.json'
    config.write_text(json.dumps({'nfs': [peer], 'idle_seconds': 1}))
    source.create(size='4M')
    for n in range(4):
        source.write(0x40 + n, '%dk' % (n * 1024), '1M')
    source.snapshot('s1')
    real_write = _mover.Counted.write
    stalled = []

    def stall(self, data):
        if self.count > 2 * MiB and not stalled:
            stalled.append(time.monotonic())
            time.sleep(4)  # connected, sending nothing
        real_write(self, data)
    with mock.patch.object(_mover.Counted, 'write', stall):
        failed = run_replica(source, peer, 's1')
    assert stalled and failed['failed'], failed
    assert 'No data arrived for 1 s, so the transfer was cut' in failed['msg'], failed['msg']
    assert target_snapshots(peer)['s1']['status'] == 'inbound'
    resumed = run_replica(source, peer, 's1')
    assert not resumed.get('failed'), resumed
    assert resumed['replica']['details']['resumed'] and resumed['replica']['status'] == 'available', resumed
    assert content(peer, target_snapshots(peer)['s1'], scratch) == source.digest('s1')


@pytest.mark.parametrize('keepalive', [0.5, 100], ids=['signs-of-life', 'no-sign-of-life'])
def test_a_source_comparing_for_long_sends_signs_of_life(source, peer, scratch, monkeypatch, keepalive):
    """A resume compares clusters by checksum: a long stretch the target holds already sends nothing."""
    assert cut_first_replica(source, peer, 0x50)['failed']
    (Path(peer).parent / 'receiver.json').write_text(json.dumps({'nfs': [peer], 'idle_seconds': 2}))
    real_pieces = _mover._pieces

    def slow_pieces(ranges):
        for n, piece in enumerate(real_pieces(ranges)):
            if n < 2:
                time.sleep(1.5)  # reading and comparing what the target has already
            yield piece
    monkeypatch.setattr(_mover, '_pieces', slow_pieces)
    monkeypatch.setattr(_mover, 'KEEPALIVE_SECONDS', keepalive)
    resumed = run_replica(source, peer, 's1')
    if keepalive > 2:
        assert resumed['failed'] and 'No data arrived for 2 s' in resumed['msg'], resumed
        return
    assert not resumed.get('failed'), resumed
    assert resumed['replica']['details']['resumed'] and resumed['replica']['status'] == 'available', resumed
    assert content(peer, target_snapshots(peer)['s1'], scratch) == source.digest('s1')


FILLING = """
import json, os, sys
from ansible_collections.stratum.storage.plugins.module_utils import _nfs
from ansible_collections.stratum.storage.plugins.module_utils._receiver import main
_nfs.SPACE_CHECK_BYTES = 1 << 20
readings = json.loads(os.environ['FULLNESS'])

class Reading:
    f_frsize, f_blocks = 4096, 10000

    def __init__(self, percent):
        self.f_bfree = self.f_bavail = int(self.f_blocks * (100 - percent) / 100)

def statvfs(path):
    log = os.environ['FULLNESS_LOG']
    with open(log, 'a') as handle:
        handle.write(path + '\\n')
    with open(log) as handle:
        seen = len(handle.read().splitlines())
    return Reading(readings[min(seen, len(readings)) - 1])

_nfs.os.statvfs = statvfs
sys.exit(main(['--config', sys.argv[1]]))
"""


@pytest.mark.parametrize('fullness, limit, stops_after', [
    ([50.0] * 8, None, None),
    ([96.0], None, 0),
    ([50.0, 60.0, 94.5], None, 2),  # df shows 95%
    ([50.0, 60.0, 96.5, 96.9], 98, None),
], ids=['room', 'full-before', 'fills-during', 'higher-limit'])
def test_a_receive_into_an_nfs_directory_stops_before_its_filesystem_is_full(
        source, peer, scratch, monkeypatch, fullness, limit, stops_after):
    config = Path(peer).parent / 'receiver.json'
    config.write_text(json.dumps(dict({'nfs': [peer]}, **({'filesystem_max_percent': limit} if limit else {}))))
    log = Path(peer).parent / 'statvfs.log'
    now = [fullness]

    def argv(self, words, stdin=True):
        command = ' '.join(_replica.shlex.quote(str(w)) for w in words)
        return ['env', 'SSH_ORIGINAL_COMMAND=%s' % command, 'PYTHONPATH=%s' % ROOT, 'FULLNESS=%s' % json.dumps(now[0]),
                'FULLNESS_LOG=%s' % log, sys.executable, '-c', FILLING, str(config)]
    monkeypatch.setattr(_replica.Peer, 'argv', argv)
    source.create(size='4M')
    for n in range(4):
        source.write(0x50 + n, '%dk' % (n * 1024), '1M')
    source.snapshot('s1')
    result = run_replica(source, peer, 's1')
    readings = log.read_text().splitlines() if log.exists() else []
    assert readings and set(readings) == {peer}  # the directory's own filesystem is read
    if stops_after is None:
        assert not result.get('failed'), result
        assert result['replica']['status'] == 'available' and len(readings) == 4  # before, then at each MiB
        assert content(peer, target_snapshots(peer)['s1'], scratch) == source.digest('s1')
        return
    assert result['failed']
    full = {0: 96, 2: 95}[stops_after]
    assert 'The filesystem of %s is %d%% full (as df counts), at or above the receiver\'s limit of 95%%; ' % (
        peer, full) in result['msg']
    if stops_after:
        assert 'the transfer stopped after writing %d bytes and resumes' % (stops_after * MiB) in result['msg']
        assert target_snapshots(peer)['s1']['status'] == 'inbound'
    else:
        assert result['msg'].endswith('nothing was written, and the next run tries again once it has room.')
        assert not [f for f in os.listdir(peer) if not f.endswith('.stratum.lock')]  # nothing made or marked
    # with room again, the next run completes it
    log.unlink()
    now[0] = [10.0]
    again = run_replica(source, peer, 's1')
    assert not again.get('failed'), again
    assert again['replica']['status'] == 'available'
    assert content(peer, target_snapshots(peer)['s1'], scratch) == source.digest('s1')
    if stops_after == 0:  # an incremental refused for want of room leaves the replica as it was
        source.write(0x60, '0', '1M')
        source.snapshot('s2')
        now[0] = [96.0]
        refused = run_replica(source, peer, 's2')
        assert refused['failed'] and 'nothing was written' in refused['msg'], refused
        assert [(s['name'], s['status']) for s in target_snapshots(peer).values()] == [('s1', 'available')]
        assert run_module(volume_info, nfs_args(peer, name='v'))['volumes'][0]['status'] == 'available'


@pytest.mark.parametrize('limit', [0, 101, 50.5, '90', True])
def test_a_bad_filesystem_limit_in_the_receiver_configuration_is_one_sentence(tmp_path, limit):
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'nfs': [str(tmp_path)], 'filesystem_max_percent': limit}))
    with pytest.raises(_receiver.StorageError, match='filesystem_max_percent .*; it must be a whole number from 1 to 100'):
        _receiver.load_config(str(config))


KILLED_AFTER_SNAPSHOT = """
import os, sys
from ansible_collections.stratum.storage.plugins.module_utils import _nfs
from ansible_collections.stratum.storage.plugins.module_utils._receiver import main
real = _nfs.NfsBackend.create_snapshot

def create_snapshot(self, *args, **kwargs):
    real(self, *args, **kwargs)
    os._exit(9)  # killed before the volume's mark is dropped

_nfs.NfsBackend.create_snapshot = create_snapshot
sys.exit(main(['--config', sys.argv[1]]))
"""


def test_a_receiver_killed_after_taking_the_snapshot_leaves_it_complete_and_the_next_run_finishes(
        source, peer, scratch, monkeypatch):
    config = Path(peer).parent / 'receiver.json'
    plain = _replica.Peer.argv

    def killed(self, words, stdin=True):
        command = ' '.join(_replica.shlex.quote(str(w)) for w in words)
        return ['env', 'SSH_ORIGINAL_COMMAND=%s' % command, 'PYTHONPATH=%s' % ROOT, sys.executable, '-c',
                KILLED_AFTER_SNAPSHOT, str(config)]
    source.create(size='4M')
    source.write(0x70, '0', '1M')
    source.snapshot('s1')
    monkeypatch.setattr(_replica.Peer, 'argv', killed)
    assert run_replica(source, peer, 's1')['failed']
    monkeypatch.setattr(_replica.Peer, 'argv', plain)
    # the snapshot is complete and listed so; the volume is not inbound although its mark is still there
    assert json.loads((Path(peer) / 'volume-v.stratum.json').read_text()).get('status') == 'inbound'
    assert [(s['name'], s['status']) for s in target_snapshots(peer).values()] == [('s1', 'available')]
    assert run_module(volume_info, nfs_args(peer, name='v'))['volumes'][0]['status'] == 'available'
    check = run_replica(source, peer, 's1', check=True)
    assert check['changed'] and check['actions'][0].startswith('finish what the receive of replica snapshot s1 left')
    finished = run_replica(source, peer, 's1')
    assert finished['changed'] and finished['actions'] == check['actions'], finished
    meta = json.loads((Path(peer) / 'volume-v.stratum.json').read_text())
    assert 'status' not in meta and 'inbound' not in meta
    assert not run_replica(source, peer, 's1')['changed']
    assert content(peer, target_snapshots(peer)['s1'], scratch) == source.digest('s1')


KILLED_BEFORE_CREATING_WENT = """
import os, sys
from ansible_collections.stratum.storage.plugins.module_utils import _nfs
from ansible_collections.stratum.storage.plugins.module_utils._receiver import main
real = _nfs.NfsBackend._write_info

def write_info(self, *args, **kwargs):
    real(self, *args, **kwargs)
    os._exit(9)  # the overlay is mapped; its "creating" status and the volume's mark are still there

_nfs.NfsBackend._write_info = write_info
sys.exit(main(['--config', sys.argv[1]]))
"""


def test_a_receiver_killed_while_taking_the_snapshot_keeps_what_the_target_volume_gets_after(
        source, peer, scratch, monkeypatch):
    from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import Source
    config = Path(peer).parent / 'receiver.json'
    plain = _replica.Peer.argv
    source.create(size='4M')
    source.write(0x71, '0', '1M')
    source.snapshot('s1')
    assert not run_replica(source, peer, 's1').get('failed')
    source.write(0x72, '1M', '1M')
    source.snapshot('s2')
    created = dict((s['name'], s['created']) for s in run_module(snapshot_info, nfs_args(
        source.directory, volume='v'))['snapshots'])['s2']

    def killed(self, words, stdin=True):
        command = ' '.join(_replica.shlex.quote(str(w)) for w in words)
        return ['env', 'SSH_ORIGINAL_COMMAND=%s' % command, 'PYTHONPATH=%s' % ROOT, sys.executable, '-c',
                KILLED_BEFORE_CREATING_WENT, str(config)]
    monkeypatch.setattr(_replica.Peer, 'argv', killed)
    assert run_replica(source, peer, 's2')['failed']
    monkeypatch.setattr(_replica.Peer, 'argv', plain)
    meta = json.loads((Path(peer) / 'volume-v.stratum.json').read_text())
    assert meta['status'] == 'inbound' and meta['snapshots']['s2']['status'] == 'creating'
    assert run_module(volume_info, nfs_args(peer, name='v'))['volumes'][0]['status'] == 'available'
    # the target volume is used meanwhile: what is written to it is kept when the receive is finished
    target = Source(peer, scratch)
    target.write(0x7f, '3M', '64k')
    finished = run_replica(source, peer, 's2')
    assert finished['changed'] and finished['actions'][0].startswith('finish what the receive of replica snapshot s2')
    meta = json.loads((Path(peer) / 'volume-v.stratum.json').read_text())
    assert 'status' not in meta and 'inbound' not in meta and 'status' not in meta['snapshots']['s2']
    assert meta['snapshots']['s2']['created'] == created  # the source's time, as an uncut receive records it
    assert content(peer, target_snapshots(peer)['s2'], scratch) == source.digest('s2')
    source.snapshot('s3')
    refused = run_replica(source, peer, 's3')
    assert refused['failed'] and 'changed since the common snapshot s2' in refused['msg'], refused


@pytest.mark.parametrize('idle', [0, -5, 86401, 2.5, '60', True])
def test_a_bad_idle_limit_in_the_receiver_configuration_is_one_sentence(tmp_path, idle):
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'nfs': [str(tmp_path)], 'idle_seconds': idle}))
    with pytest.raises(_receiver.StorageError, match='must be a whole number of seconds from 1 to 86400'):
        _receiver.load_config(str(config))


def test_refusals_change_nothing(source, peer, scratch):
    source.create(size='4M')
    source.snapshot('s1')
    assert run_replica(source, peer, 's1')['changed']
    with open(os.path.join(peer, 'volume-v.info')) as handle:
        active = json.load(handle)['active']
    qemu_write(os.path.join(peer, active), 'qcow2', 0x55, 0)
    source.snapshot('s2')
    before = tree_state(peer)
    changed = run_replica(source, peer, 's2')
    assert changed['failed'] and 'changed since the common snapshot s1: 65536 bytes were written' in changed['msg']
    other = run_replica(source, peer, 's2', target={'zfs': {'parent': 'tank/r'}})
    assert other['failed'] and other['msg'] == ('The target is a zfs backend and the source a nfs backend; a '
                                                'replica needs the same backend type on both ends.')
    elsewhere = run_replica(source, peer, 's2', target={'nfs': {'path': '/etc'}})
    assert elsewhere['failed'] and 'nfs /etc is not configured for receiving on this host' in elsewhere['msg']
    assert tree_state(peer) == before


def test_a_run_shares_one_connection_and_stops_it_also_when_it_fails(source, peer, monkeypatch):
    made, stopped = [], []
    real_mkdtemp, real_exit = _replica.tempfile.mkdtemp, _replica.Peer.__exit__

    def mkdtemp(**kwargs):
        found = real_mkdtemp(**kwargs)
        if kwargs.get('prefix') == 'stratum-ssh-':
            made.append(found)
        return found

    def exit_(self, *exc):
        stopped.append((self.control, exc[0]))
        return real_exit(self, *exc)

    monkeypatch.setattr(_replica.tempfile, 'mkdtemp', mkdtemp)
    monkeypatch.setattr(_replica.Peer, '__exit__', exit_)
    source.create(size='4M')
    source.snapshot('s1')
    assert run_replica(source, peer, 's1')['changed']
    # the run fails after reading the target: the connection is stopped all the same
    missing = run_replica(source, peer, 'nope')
    assert missing['failed'] and 'Snapshot nope of volume v does not exist' in missing['msg']
    assert [control for control, _kind in stopped] == made and len(made) == 2
    assert stopped[1][1] is not None and not any(os.path.exists(d) for d in made)


def _take_late(directory):
    result = run_module(snapshot, nfs_args(directory, volume='v', name='late'))
    sys.exit(0 if result['changed'] and not result.get('failed') else 1)


def test_a_released_hold_keeps_what_a_run_wrote_meanwhile(source, peer):
    source.create(size='1M')
    source.snapshot('s1')
    assert not run_replica(source, peer, 's1').get('failed')
    assert source.snapshots()['s1']['details']['holds'] == 1
    context = multiprocessing.get_context('fork')
    children = []
    real_release = _nfs.NfsBackend.release

    def release(self, volume, snap, tag):
        real_read = self._read_meta

        def read_then_race(name):
            meta = real_read(name)
            # another run takes a snapshot of the volume while this one holds what it read
            child = context.Process(target=_take_late, args=(source.directory,))
            child.start()
            child.join(3)
            children.append(child)
            return meta
        with mock.patch.object(self, '_read_meta', read_then_race):
            return real_release(self, volume, snap, tag)

    with mock.patch.object(_nfs.NfsBackend, 'release', release):
        gone = run_replica(source, peer, 's1', state='absent')
    assert gone['changed'] and not gone.get('failed'), gone
    assert len(children) == 1
    children[0].join(60)
    assert children[0].exitcode == 0
    # the snapshot waited for the volume's lock, so neither write lost the other
    meta = json.loads(Path(source.directory, 'volume-v.stratum.json').read_text())
    assert meta['snapshots']['late'].get('uuid') and 'holds' not in meta['snapshots']['s1']
    assert source.snapshots()['s1']['details']['holds'] == 0


def _count_commands(monkeypatch):
    """Record the first word of each receiver command that the module starts."""
    started = []
    patched = _replica.Peer.argv

    def argv(self, words, stdin=True):
        started.append(words[0])
        return patched(self, words, stdin)
    monkeypatch.setattr(_replica.Peer, 'argv', argv)
    return started


def test_a_replica_starts_one_receiver_that_answers_info_then_takes_the_data(source, peer, monkeypatch):
    started = _count_commands(monkeypatch)
    stops = []
    real_stop = _replica._stop

    def stop(process, wait=0):
        real_stop(process, wait)
        stops.append(process.returncode)
    monkeypatch.setattr(_replica, '_stop', stop)
    source.create(size='1M')
    source.write(0x11, 0, '256k')
    source.snapshot('s1')
    assert run_replica(source, peer, 's1', check=True)['changed']
    # the session got no further request: its receiver ended by itself when the input ended (not killed)
    assert started == ['session'] and stops == [0]
    full = run_replica(source, peer, 's1')
    assert not full.get('failed') and full['replica']['status'] == 'available', full
    source.snapshot('s2')
    incr = run_replica(source, peer, 's2')
    assert not incr.get('failed') and incr['replica']['details']['base'] == 's1', incr
    assert run_replica(source, peer, 's2')['changed'] is False
    gone = run_replica(source, peer, 's1', state='absent')
    assert gone['changed'] and sorted(target_snapshots(peer)) == ['s2']
    # each run is one receiver command: its session answers info, then takes the receive or the delete
    assert started == ['session'] * 5
    assert stops == [0] * 5


@pytest.mark.parametrize('check', [True, False])
def test_the_source_is_read_while_the_session_is_set_up(source, peer, monkeypatch, check):
    """The source's reads need nothing from the target's answer: they run before it is awaited, not after."""
    events = []
    real_spawn, real_answer, real_read = _replica.Peer._spawn, _replica.Peer._session_answer, _nfs.NfsBackend.read_volume

    def spawn(self, words):
        events.append('spawn ' + words[0])
        return real_spawn(self, words)

    def answer(self, *args):
        found = real_answer(self, *args)
        events.append('answer')
        return found

    def read(self, name):
        events.append('source read')
        return real_read(self, name)
    source.create(size='1M')
    source.snapshot('s1')
    monkeypatch.setattr(_replica.Peer, '_spawn', spawn)
    monkeypatch.setattr(_replica.Peer, '_session_answer', answer)
    monkeypatch.setattr(_nfs.NfsBackend, 'read_volume', read)
    done = run_replica(source, peer, 's1', check=check)
    assert not done.get('failed') and done['replica']['status'] == 'available', done
    assert events[:3] == ['spawn session', 'source read', 'answer'], events


def test_a_failed_source_read_stops_the_session_it_started(source, peer, monkeypatch):
    stops = []
    real_stop = _replica._stop

    def stop(process, wait=0):
        real_stop(process, wait)
        stops.append(process.returncode)
    source.create(size='1M')
    source.snapshot('s1')
    monkeypatch.setattr(_replica, '_stop', stop)

    def unreadable(self, name):
        raise _nfs.StorageError('The source cannot be read.')
    monkeypatch.setattr(_nfs.NfsBackend, 'read_volume', unreadable)
    done = run_replica(source, peer, 's1')
    assert done['failed'] and done['msg'] == 'The source cannot be read.'
    assert len(stops) == 1 and stops[0] is not None  # the receiver it had started is not left running
    assert os.listdir(peer) == []


def test_a_receiver_without_sessions_is_asked_info_then_receive(source, peer, monkeypatch):
    started = _count_commands(monkeypatch)
    patched = _replica.Peer.argv

    def older(self, words, stdin=True):
        argv = patched(self, words, stdin)
        # the receiver of a release before sessions: its verbs without "session"
        argv[-1] = argv[-1].replace('import sys;', 'import sys; from ansible_collections.stratum.storage.plugins.'
                                    'module_utils import _replica; _replica.VERBS = ("info", "receive", "abort", '
                                    '"delete");', 1)
        return argv
    monkeypatch.setattr(_replica.Peer, 'argv', older)
    source.create(size='1M')
    source.snapshot('s1')
    full = run_replica(source, peer, 's1')
    assert not full.get('failed') and full['replica']['status'] == 'available', full
    assert started == ['session', 'info', 'receive']


def start_receiver(peer, command):
    """The receiver as the forced command starts it, its input and output pipes."""
    import subprocess
    config = str(Path(peer).parent / 'receiver.json')
    return subprocess.Popen(
        [sys.executable, '-c', 'import sys; from ansible_collections.stratum.storage.plugins.module_utils._receiver '
         'import main; sys.exit(main(["--config", %r]))' % config],
        env=dict(os.environ, SSH_ORIGINAL_COMMAND=command, PYTHONPATH=ROOT),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def test_a_session_is_cut_when_its_client_stays_silent(peer):
    (Path(peer).parent / 'receiver.json').write_text(json.dumps({'nfs': [peer], 'idle_seconds': 1}))
    process = start_receiver(peer, 'session nfs %s v' % peer)
    first = json.loads(process.stdout.readline())
    assert first['session'] is True and first['volume'] is None
    # nothing more comes, the input stays open: cut after idle_seconds
    assert process.wait(30) == 2
    assert 'No data arrived for 1 s' in json.loads(process.stdout.read())['error']


@pytest.mark.parametrize('line, message', [
    (b'x' * 5000 + b'\n', 'must be one line of at most 4096 bytes'),
    (b'info nfs PEER other\n', 'must name the place and volume that the session named'),
    (b'id\n', "Unknown request 'id'"),
    (b"abort nfs PEER 'v\n", 'cannot be split into words'),
], ids=['long', 'other-volume', 'other-verb', 'unsplittable'])
def test_a_bad_request_in_a_session_is_refused_and_ends_it(peer, line, message):
    process = start_receiver(peer, 'session nfs %s v' % peer)
    assert json.loads(process.stdout.readline())['session'] is True
    out, _err = process.communicate(line.replace(b'PEER', peer.encode()) + b'abort nfs %s v\n' % peer.encode(), 30)
    assert process.returncode == 2
    answers = [json.loads(text) for text in out.splitlines()]
    assert len(answers) == 1 and message in answers[0]['error'], answers
    # a plain info ends with its answer, whatever its input holds
    process = start_receiver(peer, 'info nfs %s v' % peer)
    out, _err = process.communicate(b'abort nfs %s v\n' % peer.encode(), 30)
    assert process.returncode == 0 and len(out.splitlines()) == 1 and 'session' in json.loads(out)


def test_the_pipes_a_block_stream_is_written_into_hold_a_mib(peer):
    """The block stream is written by Python on the source and read by Python on the target (not spliced): the
    ssh client's input and the receiver's input are widened as relay widens the pipes it splices between."""
    import fcntl
    from ansible_collections.stratum.storage.plugins.module_utils._runner import ProcessRunner

    process = start_receiver(peer, 'session nfs %s v' % peer)
    assert json.loads(process.stdout.readline())['session'] is True
    # the parent's end is the same pipe as the receiver's standard input
    assert fcntl.fcntl(process.stdin.fileno(), _mover._F_GETPIPE_SZ) == _mover.PIPE_BYTES
    process.communicate(b'', 30)
    assert process.returncode == 0
    client = _replica.Peer(ProcessRunner(), {'host': 'peer'})
    process, err = client._spawn(['info', 'nfs', peer, 'v'])
    try:
        assert fcntl.fcntl(process.stdin.fileno(), _mover._F_GETPIPE_SZ) == _mover.PIPE_BYTES
    finally:
        process.communicate(b'', 30)
        err.close()


def test_a_session_the_source_keeps_waiting_is_not_used_after_half_the_receivers_wait(source, peer, monkeypatch):
    """The source waits for its volume's lock longer than the receiver waits for the next request."""
    (Path(peer).parent / 'receiver.json').write_text(json.dumps({'nfs': [peer], 'idle_seconds': 1}))
    started = _count_commands(monkeypatch)
    real_lock = _nfs.NfsBackend.lock

    def slow_lock(self, volumes):
        time.sleep(2.5)  # another run holds the source volume
        return real_lock(self, volumes)
    monkeypatch.setattr(_nfs.NfsBackend, 'lock', slow_lock)
    source.create(size='1M')
    source.write(0x21, 0, '64k')
    source.snapshot('s1')
    full = run_replica(source, peer, 's1')
    assert not full.get('failed') and full['replica']['status'] == 'available', full
    # the session was ended, and the data went in a command of its own
    assert started == ['session', 'receive']
