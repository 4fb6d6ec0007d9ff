# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plan_replica as data: the source chain and the receiver's answer in, the plan or the refusal out."""

from __future__ import annotations

import io
import os
import stat
import struct

import pytest

from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._replica import (
    Peer, check_target, hold_tag, parse_words, plan_replica, target_config)
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot

WHERE = 'zfs tank/r on root@peer:22'


def chain(*names, status='available'):
    """Source snapshots a, b, ... of volume v with guids g-a, g-b, ..."""
    return [Snapshot(name=n, volume='v', backend='zfs', status=status, size=1 << 20,
                     created='2026-11-2%dT00:00:00Z' % i, details={'guid': 'g-' + n}) for i, n in enumerate(names)]


def identity(snapshot):
    return snapshot.details.get('guid')


def target(snapshots=(), volume='available', token=None, written=0):
    """The receiver's info answer: snapshots given as (name, identity, status)."""
    return {'volume': None if volume is None else {'name': 'v', 'status': volume},
            'snapshots': [{'name': n, 'identity': i, 'status': s} for n, i, s in snapshots],
            'token': token, 'written': written}


def plan(source, name, answer, resumes=None, intermediates=False):
    snapshot = next(s for s in source if s.name == name)
    return plan_replica(source, snapshot, identity, answer, WHERE, 'v', resumes, intermediates)


def test_the_same_snapshot_already_there_is_nothing_to_do():
    result = plan(chain('a', 'b'), 'b', target([('a', 'g-a', 'available'), ('b', 'g-b', 'available')]))
    assert result.mode == 'none' and result.actions == [] and result.replica['name'] == 'b'


def test_a_snapshot_of_the_same_name_with_another_identity_is_refused():
    with pytest.raises(StorageError, match='has a snapshot b that is not a replica of this one .identity g-x, not g-b'):
        plan(chain('a', 'b'), 'b', target([('a', 'g-a', 'available'), ('b', 'g-x', 'available')]))


def test_no_target_volume_gets_everything():
    result = plan(chain('a', 'b'), 'b', target(volume=None))
    assert (result.mode, result.base, result.abort) == ('full', None, False)
    assert result.actions == ['send all of snapshot b of volume v to ' + WHERE]
    assert result.replica['status'] == 'available' and result.replica['details'] == {'identity': 'g-b'}


def test_the_newest_common_snapshot_by_identity_is_the_base():
    # the target's "b" has another identity, so "a" is the newest common snapshot; "b" then blocks the send
    answer = target([('a', 'g-a', 'available'), ('c', 'g-c', 'available')])
    result = plan(chain('a', 'b', 'c', 'd'), 'd', answer)
    assert (result.mode, result.base, result.base_identity) == ('incremental', 'c', 'g-c')
    assert result.replica['parent'] == 'c'
    assert result.actions == ['send the changes of snapshot d of volume v to %s since snapshot c ' % WHERE]


def test_a_name_alone_is_not_a_common_base():
    with pytest.raises(StorageError, match='holds no snapshot of volume v older than b with the same identity'):
        plan(chain('a', 'b'), 'b', target([('a', 'other-guid', 'available')]))


def test_an_existing_target_volume_without_snapshots_is_refused():
    with pytest.raises(StorageError, match='so there is no common base; refused'):
        plan(chain('a'), 'a', target([]))


def test_a_target_with_a_newer_snapshot_changed_since_the_base():
    answer = target([('a', 'g-a', 'available'), ('mine', 'g-m', 'available')])
    with pytest.raises(StorageError, match='changed since the common snapshot: it has snapshot.s. mine that the source'):
        plan(chain('a', 'b'), 'b', answer)


def test_a_target_written_since_the_base_is_refused():
    with pytest.raises(StorageError, match='changed since the common snapshot a: 65536 bytes were written'):
        plan(chain('a', 'b'), 'b', target([('a', 'g-a', 'available')], written=65536))


def test_a_cut_transfer_of_the_same_snapshot_resumes():
    answer = target([('a', 'g-a', 'available'), ('b', None, 'inbound')], token='1-abc')
    result = plan(chain('a', 'b'), 'b', answer, resumes='g-b')
    assert (result.mode, result.abort) == ('resume', False)
    assert result.actions == ['resume sending snapshot b of volume v to %s where the cut transfer stopped' % WHERE]


def test_a_cut_transfer_of_another_snapshot_is_aborted_first():
    answer = target([('a', 'g-a', 'available'), ('x', None, 'inbound')], token='1-abc')
    result = plan(chain('a', 'b'), 'b', answer, resumes='g-x')
    assert (result.mode, result.base, result.abort) == ('incremental', 'a', True)
    assert result.actions[0] == 'abort the unfinished receive into volume v on ' + WHERE


def test_a_volume_that_a_cut_replica_was_creating_is_aborted_and_sent_again():
    answer = target([('a', None, 'inbound')], volume='inbound', token='1-abc')
    result = plan(chain('a', 'b'), 'b', answer, resumes='g-a')
    assert (result.mode, result.abort) == ('full', True)


def test_intermediate_snapshots_are_named_in_the_action():
    result = plan(chain('a', 'b', 'c'), 'c', target([('a', 'g-a', 'available')]), intermediates=True)
    assert result.base == 'a' and result.actions[-1].endswith('since snapshot a and the snapshots between')


def test_check_target_skips_inbound_snapshots():
    check_target('v', [{'name': 'a', 'identity': 'g-a', 'status': 'available'},
                       {'name': 'b', 'identity': None, 'status': 'inbound'}], 0, 'g-a', WHERE)


def test_a_snapshot_without_identity_cannot_be_replicated():
    source = chain('a')
    source[0].details.pop('guid')
    with pytest.raises(StorageError, match='has no identity to match on the target'):
        plan(source, 'a', target(volume=None))


@pytest.mark.parametrize('words, message', [
    ([], 'Unknown request'),
    (['id'], "Unknown request 'id'; this key may only run info, session, receive, abort, delete"),
    (['sh', '-c', 'id'], "Unknown request 'sh -c id'"),
    (['info', 'zfs', 'tank/r'], 'Request info takes 4 words, not 3'),
    (['info', 'zfs', 'tank/r', '../etc'], "Volume name '../etc' is invalid"),
    (['delete', 'zfs', 'tank/r', 'v', 'a;id', '-'], "Snapshot name 'a;id' is invalid"),
])
def test_the_receiver_accepts_only_its_verbs_with_valid_names(words, message):
    with pytest.raises(InvalidInputError, match=message.replace('(', r'\(').replace(')', r'\)')):
        parse_words(words)


class Runner:
    pass


@pytest.mark.parametrize('config, message', [
    ({'host': '-oProxyCommand=x'}, "target.host '-oProxyCommand=x' is not a host name"),
    ({'host': 'a b'}, "target.host 'a b' is not a host name"),
    ({'host': 'peer', 'port': 0}, 'target.port 0 is not a TCP port number'),
    ({'host': 'peer', 'user': 'root;id'}, "target.user 'root;id' is not a user name"),
    ({'host': 'peer', 'key': 'relative/key'}, "target.key 'relative/key' must be an absolute path"),
    ({'host': 'peer', 'known_hosts': '/a b'}, "target.known_hosts '/a b' must be an absolute path without spaces"),
])
def test_bad_peer_settings_are_one_sentence(config, message):
    with pytest.raises(InvalidInputError, match=message):
        Peer(Runner(), config)


def test_the_ssh_command_checks_host_keys_and_quotes_each_word():
    peer = Peer(Runner(), {'host': 'dr1', 'port': 2222, 'key': '/k', 'known_hosts': '/kh'})
    argv = peer.argv(['info', 'zfs', 'tank/r', 'v'], stdin=False)
    assert argv[0] == 'ssh' and 'BatchMode=yes' in argv and 'StrictHostKeyChecking=yes' in argv
    assert argv[argv.index('-i') + 1] == '/k' and 'UserKnownHostsFile=/kh' in argv and '-n' in argv
    assert argv[-2:] == ['dr1', 'info zfs tank/r v']
    assert Peer(Runner(), {'host': 'dr1'}).argv(["it's"])[-1] == "'it'\"'\"'s'"


class Recorder:
    def __init__(self):
        self.ran = []

    def run(self, argv, check=True):
        self.ran.append(argv)


def test_the_calls_of_one_run_share_one_connection_that_is_closed_after():
    runner = Recorder()
    with Peer(runner, {'host': 'dr1', 'port': 2222}) as peer:
        argv = peer.argv(['info', 'zfs', 'tank/r', 'v'], stdin=False)
        control = peer.control
        assert stat.S_IMODE(os.lstat(control).st_mode) == 0o700 and os.path.dirname(control) == '/tmp'
        assert ['-o', 'ControlMaster=auto', '-o', 'ControlPath=%s/m' % control] == argv[argv.index('-l') + 2:][:4]
        assert 'ControlPersist=60' in argv and argv[-2:] == ['dr1', 'info zfs tank/r v']
        assert argv[argv.index('-E') + 1] == control + '/log'
        with open(os.path.join(control, 'm'), 'w'):
            pass  # where ssh keeps the connection's socket
    assert not os.path.exists(control) and peer.control is None
    assert runner.ran == [['ssh', '-o', 'ControlPath=%s/m' % control, '-O', 'exit', '-p', '2222', '-l', 'root', 'dr1']]
    # outside a run, and after it, each call connects on its own
    assert not any(a.startswith('Control') for a in peer.argv(['info', 'zfs', 'tank/r', 'v']))
    with Peer(runner, {'host': 'dr1'}) as unused:
        pass
    assert len(runner.ran) == 1 and unused.control is None  # no connection was made: nothing to stop


class Dropped:
    """A run whose shared connection ends: ssh exits 255, and only its log says why."""

    def __init__(self):
        self.peer = None

    def run(self, argv, check=True):
        if '-O' not in argv:
            with open(self.peer.control + '/log', 'a') as log:
                log.write('Timeout, server dr1 not responding.\n')
        return type('Result', (), {'rc': 255, 'stdout': '', 'stderr': ''})


def test_why_a_shared_connection_ended_comes_from_the_ssh_log():
    runner = Dropped()
    with Peer(runner, {'host': 'dr1'}) as peer:
        runner.peer = peer
        with open(peer.control + '/log', 'w') as log:
            log.write('an older line\n')
        peer._logged()  # what an earlier call left
        with pytest.raises(StorageError, match='^The replication target root@dr1:22 cannot be reached over SSH: '
                                               'Timeout, server dr1 not responding[.]$'):
            peer.call(['info', 'zfs', 'tank/r', 'v'])


def test_the_hold_is_named_after_the_target_and_stays_short():
    peer = Peer(Runner(), {'host': 'dr1', 'port': 22})
    assert hold_tag(peer, 'backup/r', 'v') == 'stratum-replica:dr1:22:backup/r/v'
    long_tag = hold_tag(peer, 'p' * 250, 'v')
    assert long_tag.startswith('stratum-replica:') and len(long_tag) == len('stratum-replica:') + 32


def test_the_target_names_exactly_one_backend():
    assert target_config({'zfs': {'parent': 'tank/r'}, 'lvm': None}, ['lvm', 'nfs', 'zfs'])[2] == 'tank/r'
    assert target_config({'lvm': {'vg': 'vg0', 'thin_pool': 'pool'}}, ['lvm', 'zfs'])[2] == 'vg0/pool'
    with pytest.raises(InvalidInputError, match='target needs exactly one backend dict .lvm, nfs, zfs.'):
        target_config({'zfs': {'parent': 'a'}, 'lvm': {'vg': 'b'}}, ['lvm', 'nfs', 'zfs'])


def test_no_snapshot_is_taken_of_a_volume_that_is_receiving():
    from ansible_collections.stratum.storage.plugins.module_utils._planner import plan_snapshot
    from ansible_collections.stratum.storage.plugins.module_utils._schema import Volume
    receiving = Volume(name='v', backend='nfs', status='inbound', size=1 << 20)
    with pytest.raises(StorageError, match='Volume v is receiving a replica .status inbound., so snapshot s cannot'):
        plan_snapshot({'volume': 'v', 'name': 's', 'state': 'present'}, receiving, [], 'nfs')


class Image:
    """An in-memory destination of a block stream."""

    def __init__(self, size, fill=0):
        self.data = bytearray([fill]) * size

    def read(self, offset, length):
        return bytes(self.data[offset:offset + length])

    def write(self, offset, data):
        self.data[offset:offset + len(data)] = data

    def write_zeroes(self, offset, length):
        self.data[offset:offset + length] = bytes(length)


def _stream(source, size, ranges, hashes=False, target=None, keepalive=False):
    """Run send_blocks into a buffer (answering the checksum request from ``target``) and return the bytes."""
    import io
    from ansible_collections.stratum.storage.plugins.module_utils._mover import CLUSTER, send_blocks
    answer = io.BufferedReader(io.BytesIO(b''))
    if hashes:
        import hashlib
        import struct
        sums = [hashlib.sha256(target.read(at, CLUSTER)).digest() for at in range(0, size, CLUSTER)]
        answer = io.BufferedReader(io.BytesIO(b'H' + struct.pack('>Q', len(sums)) + b''.join(sums)))
    out = io.BytesIO()
    send_blocks(source, size, ranges, out, answer, hashes, keepalive=keepalive)
    return out.getvalue()


def test_a_block_stream_carries_the_ranges_and_zeros_and_is_checked_on_arrival():
    import io
    from ansible_collections.stratum.storage.plugins.module_utils._mover import read_header, receive_blocks
    size = 1 << 20
    source = Image(size)
    source.write(65536, b'\x07' * 70000)
    target = Image(size, fill=0x55)
    wire = io.BufferedReader(io.BytesIO(_stream(source, size, [(65536, 70000), (524288, 65536)])))
    written, zeroed = receive_blocks(target, read_header(wire), wire, io.BytesIO())
    assert (written, zeroed) == (2 * 65536, 65536)  # ranges travel as whole 64 KiB clusters
    assert target.read(65536, 70000) == b'\x07' * 70000 and target.read(524288, 65536) == bytes(65536)
    assert target.read(0, 65536) == b'\x55' * 65536  # outside the ranges: untouched


def test_with_checksums_only_the_clusters_the_target_lacks_are_sent():
    size = 1 << 20
    source = Image(size, fill=1)
    target = Image(size, fill=1)
    target.write(3 * 65536, b'\x02' * 65536)
    sent = _stream(source, size, None, hashes=True, target=target)
    assert 65536 < len(sent) < 65536 + 200


def test_a_record_out_of_bounds_or_a_wrong_digest_is_refused():
    import io
    import struct
    from ansible_collections.stratum.storage.plugins.module_utils._mover import read_header, receive_blocks
    header = b'{"size": 131072, "ranges": null, "hashes": false}\n'
    hostile = header + struct.pack('>QIB', 131072, 65536, 0) + bytes(65536)
    wire = io.BufferedReader(io.BytesIO(hostile))
    with pytest.raises(StorageError, match='record out of bounds'):
        receive_blocks(Image(131072), read_header(wire), wire, io.BytesIO())
    lying = header + struct.pack('>QIB', (1 << 64) - 1, 0, 2) + b'\x00' * 32
    wire = io.BufferedReader(io.BytesIO(lying))
    with pytest.raises(StorageError, match='does not read back as the source sent it'):
        receive_blocks(Image(131072), read_header(wire), wire, io.BytesIO())
    for bad in (b'{"size": -1, "ranges": null}\n', b'{"size": 10, "ranges": [[8, 4]]}\n', b'not json\n'):
        with pytest.raises(StorageError, match='does not start with a valid header'):
            read_header(io.BufferedReader(io.BytesIO(bad)))


def _begin(version=1, objset=3, flags=0xc, toguid=42, fromguid=0, payload=b'', order='<'):
    import struct
    head = struct.pack(order + 'II QQQ II QQ 256s', 0, len(payload), 0x2F5BACBAC, version, 0, objset, flags,
                       toguid, fromguid, b'pool/v@s')
    return head + payload


@pytest.mark.parametrize('record, message', [
    (_begin(version=2), 'it is a package of several streams'),
    (_begin(objset=2), 'it is not a zvol'),
    (_begin(flags=0xd), 'it is a clone stream'),
    (_begin(toguid=43), 'it carries snapshot guid 43, not 42'),
    (_begin(fromguid=7), 'it starts from guid 7, not nothing'),
    (_begin(payload=b'x' * 16), 'it carries a payload'),
    (b'\0' * 312, 'The data is not a ZFS send stream'),
    (b'\0' * 20, 'ended before its first record'),
])
def test_the_zfs_receiver_accepts_only_a_plain_stream_of_the_announced_zvol_snapshot(record, message):
    import io
    from ansible_collections.stratum.storage.plugins.module_utils._zfs import check_stream_begin
    with pytest.raises(StorageError, match=message):
        check_stream_begin(io.BytesIO(record + b'rest'), '42', None, False)


def test_a_plain_zvol_stream_passes_in_either_byte_order():
    import io
    from ansible_collections.stratum.storage.plugins.module_utils._zfs import check_stream_begin
    for order in '<>':
        stream = io.BytesIO(_begin(toguid=42, fromguid=9, order=order) + b'rest')
        assert len(check_stream_begin(stream, '42', '9', False)) == 312 and stream.read() == b'rest'
    resumed = io.BytesIO(_begin(toguid=42, fromguid=9, payload=b'resume-state') + b'rest')
    assert check_stream_begin(resumed, '42', None, True).endswith(b'resume-state')


def _zfs_receiver_host(rows):
    """A canned ZFS host of ``rows`` for the receiver, and a runner that records its commands on it."""
    from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    host = zfs.zfs_host(rows, get=lambda argv: (0, 'receive_resume_token\t-\nwritten\t0\n', ''),
                        set=lambda argv: (0, '', ''))

    class CannedRunner:
        def run(self, argv, check=True, error=None, **kwargs):
            host.commands.append(list(argv))
            rc, out, err = host.answers[argv[0]](argv)
            return CommandResult(argv, rc, out, err)
    return host, CannedRunner()


def test_the_receiver_does_not_name_a_clone_origin_outside_its_place():
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    rows = [zfs.row(zfs.PARENT + '/inside', 'volume', 32 << 20, 10, origin='tank/private/secret@s9'),
            zfs.row(zfs.PARENT + '/inside@r1', 'snapshot', 32 << 20, 11),
            zfs.row(zfs.PARENT + '/clone', 'volume', 32 << 20, 12, origin=zfs.PARENT + '/inside@r1')]
    _host, runner = _zfs_receiver_host(rows)

    config = {'zfs': [zfs.PARENT]}
    outside = serve(['info', 'zfs', zfs.PARENT, 'inside'], config, None, runner)
    assert outside['volume']['origin'] == {'volume': None, 'snapshot': None}
    assert 'private' not in repr(outside) and 'secret' not in repr(outside)
    assert [s['name'] for s in outside['snapshots']] == ['r1']
    inside = serve(['info', 'zfs', zfs.PARENT, 'clone'], config, None, runner)
    assert inside['volume']['origin'] == {'volume': 'inside', 'snapshot': 'r1'}


def _kinds(stream):
    """The record kinds of a block stream (after its header), in order."""
    from ansible_collections.stratum.storage.plugins.module_utils._mover import DATA, FINISH, RECORD
    at, kinds = stream.index(b'\n') + 1, []
    while True:
        offset, length, kind = RECORD.unpack_from(stream, at)
        kinds.append(kind)
        at += RECORD.size + (length if kind == DATA else 0)
        if kind == FINISH:
            return kinds


@pytest.mark.parametrize('offered', [True, False], ids=['receiver-takes-them', 'older-receiver'])
def test_signs_of_life_only_while_nothing_else_goes_and_only_to_a_receiver_that_takes_them(offered, monkeypatch):
    import io
    from ansible_collections.stratum.storage.plugins.module_utils import _mover
    monkeypatch.setattr(_mover, 'KEEPALIVE_SECONDS', 0)
    size = 4 << 20
    same = Image(size, fill=7)
    quiet = _stream(same, size, None, hashes=True, target=Image(size, fill=7), keepalive=offered)
    kinds = _kinds(quiet)
    assert kinds.count(_mover.KEEPALIVE) == (4 if offered else 0), kinds  # one before each MiB read
    busy = _kinds(_stream(same, size, None, hashes=True, target=Image(size, fill=1), keepalive=offered))
    # (with a limit of 0 s one goes before the first MiB, before anything else could)
    assert _mover.KEEPALIVE not in busy[1:] and busy.count(_mover.DATA) == 64, busy
    target = Image(size, fill=7)
    wire = io.BufferedReader(io.BytesIO(quiet))
    assert _mover.receive_blocks(target, _mover.read_header(wire), wire, io.BytesIO()) == (0, 0)
    hostile = quiet.replace(_mover.RECORD.pack(0, 0, _mover.KEEPALIVE), _mover.RECORD.pack(0, 5, _mover.KEEPALIVE))
    if offered:
        wire = io.BufferedReader(io.BytesIO(hostile))
        with pytest.raises(StorageError, match='record out of bounds'):
            _mover.receive_blocks(target, _mover.read_header(wire), wire, io.BytesIO())


def test_a_request_naming_no_backend_is_refused(tmp_path):
    import json
    from ansible_collections.stratum.storage.plugins.module_utils import _receiver
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'zfs': ['tank/r'], 'idle_seconds': 60}))
    with pytest.raises(_receiver.Refused, match='idle_seconds tank/r is not configured'):
        _receiver.serve(['info', 'idle_seconds', 'tank/r', 'v'], _receiver.load_config(str(config)), None, None)


def test_a_zfs_stream_that_does_not_begin_leaves_no_mark():
    """A client silent (or wrong) before its first record: refused before the zvol is marked receiving."""
    import io
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    host, runner = _zfs_receiver_host(zfs.base_rows())

    words = ['receive', 'zfs', zfs.PARENT, 'v', 's3', '1013', '1012', 'new']
    with pytest.raises(StorageError, match='ended before its first record'):
        serve(words, {'zfs': [zfs.PARENT]}, io.BufferedReader(io.BytesIO(b'\0' * 20)), runner)
    assert [argv[1] for argv in host.commands] == ['list', 'get'], host.commands


@pytest.mark.parametrize('between', [False, True], ids=['no-run-between', 'a-run-between'])
def test_a_zfs_receive_in_a_session_reads_again_only_after_another_run(between, tmp_path, monkeypatch):
    """The session's info read stands for the read under the lock unless a run took the volume's lock since."""
    import io
    from ansible_collections.stratum.storage.plugins.module_utils import _files
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import Session, serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    host, runner = _zfs_receiver_host(zfs.base_rows())

    config, session = {'zfs': [zfs.PARENT]}, Session()
    info = serve(['session', 'zfs', zfs.PARENT, 'v'], config, None, runner, session=session)
    assert info['session'] is True and [s['name'] for s in info['snapshots']] == ['s1', 's2']
    assert [argv[1] for argv in host.commands] == ['list', 'get']
    if between:
        with _files.host_locks('zfs:%s' % zfs.PARENT, ['v']):
            pass
    words = ['receive', 'zfs', zfs.PARENT, 'v', 's3', '1013', '1012', 'new']
    with pytest.raises(StorageError, match='ended before its first record'):
        serve(words, config, io.BufferedReader(io.BytesIO(b'\0' * 20)), runner, session=session)
    assert [argv[1] for argv in host.commands] == ['list', 'get'] + (['list', 'get'] if between else [])
    # a plain info is no session, and a session serves only the place and volume it named
    assert serve(['info', 'zfs', zfs.PARENT, 'v'], config, None, runner)['session'] is False
    with pytest.raises(StorageError, match='must name the place and volume that the session named'):
        serve(['abort', 'zfs', zfs.PARENT, 'w'], config, None, runner, session=session)


@pytest.mark.parametrize('fullness, limit, stops_after', [
    (['50.00 10.00'] * 8, 95, None),
    (['96.00 10.00'], 95, 0),
    (['50.00 10.00', '60.00 20.00', '70.00 97.50'], 95, 2),
    (['50.00 10.00', '60.00 20.00', '70.00 97.50', '70.00 97.90'], 98, None),
], ids=['room', 'full-before', 'metadata-fills-during', 'higher-limit'])
def test_a_receive_into_a_thin_pool_stops_before_the_pool_is_full(fullness, limit, stops_after, tmp_path, monkeypatch):
    import io
    import json
    from ansible_collections.stratum.storage.plugins.module_utils import _files, _lvm, _mover, _receiver
    from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_lvm_canned as lvm
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    monkeypatch.setattr(_lvm, 'POOL_CHECK_BYTES', 1 << 20)
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'lvm': ['vg0/pool'], 'thin_pool_max_percent': limit}))
    answers, commands, made, done, events = list(fullness), [], [], [], []

    class CannedRunner:
        def run(self, argv, check=True, error=None, **kwargs):
            commands.append(list(argv))
            if 'data_percent,metadata_percent' in argv:
                events.append('pool')
                data, meta = answers.pop(0).split()
                return CommandResult(argv, 0, json.dumps({'report': [{'lv': [
                    {'data_percent': data, 'metadata_percent': meta}]}]}), '')
            assert argv[0] == 'lvs', argv
            rows = [lvm.POOL] + ([lvm.volume_lv('v', 4 << 20, segtype='thin', pool='pool', attr='Vwi-a-tz--'),
                                  lvm.thin_snap_lv('v', 's1', 4 << 20)] if done else [])
            return CommandResult(argv, 0, json.dumps({'report': [{'lv': rows}]}), '')

    target = Image(4 << 20)
    monkeypatch.setattr(_mover, 'BlockWriter', lambda path, size, what, skip_zeros=False: _Opened(target))
    monkeypatch.setattr(_lvm.LvmBackend, '_receive_target',
                        lambda self, *args: made.append(args[0]) or events.append('target') or ('lv', True))
    monkeypatch.setattr(_lvm.LvmBackend, '_receive_done', lambda self, *args: done.append(args[0]))
    source = Image(4 << 20, fill=3)
    words = ['receive', 'lvm', 'vg0/pool', 'v', 's1', 'uuid-1', '-', 'new']
    stream = io.BufferedReader(io.BytesIO(_stream(source, 4 << 20, None)))
    if stops_after is None:
        answer = _receiver.serve(words, _receiver.load_config(str(config)), stream, CannedRunner(), io.BytesIO())
        assert answer['snapshot']['name'] == 's1' and done == ['v'] and target.data == source.data
        assert len([c for c in commands if 'data_percent,metadata_percent' in c]) == 4  # before, then each MiB
        return
    with pytest.raises(StorageError) as raised:
        _receiver.serve(words, _receiver.load_config(str(config)), stream, CannedRunner(), io.BytesIO())
    full = '97.5% full (metadata)' if stops_after else '96.0% full (data)'
    assert 'Thin pool vg0/pool is %s, at or above the receiver\'s limit of 95%%' % full in raised.value.message
    assert done == []  # the snapshot is not taken: the replica stays inbound, for the next run to resume
    # the pool is read once the LV to write is made (and active, so an inactive pool is active then)
    assert made == ['v'] and events[:2] == ['target', 'pool']
    if stops_after == 0:
        assert raised.value.message.endswith('nothing was written, and the next run tries again once the pool has room.')
        assert not any(target.data)
    else:
        assert 'stopped after writing %d bytes' % (stops_after << 20) in raised.value.message
        assert target.data[:2 << 20] == source.data[:2 << 20] and not any(target.data[2 << 20:])
    assert [c for c in commands if 'data_percent,metadata_percent' in c][0][-1] == 'vg0/pool'


class _Opened:
    def __init__(self, image):
        self.image = image

    def __enter__(self):
        return self.image

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize('limit', [0, 101, 50.5, '90', True])
def test_a_bad_thin_pool_limit_in_the_receiver_configuration_is_one_sentence(tmp_path, limit):
    import json
    from ansible_collections.stratum.storage.plugins.module_utils import _receiver
    config = tmp_path / 'receiver.json'
    config.write_text(json.dumps({'lvm': ['vg0/pool'], 'thin_pool_max_percent': limit}))
    with pytest.raises(StorageError, match='thin_pool_max_percent .*; it must be a whole number from 1 to 100'):
        _receiver.load_config(str(config))


def test_a_zfs_receive_killed_before_its_mark_went_is_finished_by_the_next_run():
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    mark = {'stratum:status': 'receiving:s2'}  # as 0.2.0 wrote it (no guid); the zvol's snapshots inherit it
    rows = [zfs.row(zfs.PARENT + '/v', 'volume', 32 << 20, 10, extra=mark),
            zfs.row(zfs.PARENT + '/v@s1', 'snapshot', 32 << 20, 11, extra=mark),
            zfs.row(zfs.PARENT + '/v@s2', 'snapshot', 32 << 20, 12, extra=mark)]
    host, runner = _zfs_receiver_host(rows)
    inherited = []
    plain = host.answers['zfs']
    host.answers['zfs'] = lambda argv: inherited.append(argv) or (0, '', '') if argv[1] == 'inherit' else plain(argv)
    config = {'zfs': [zfs.PARENT]}
    info = serve(['info', 'zfs', zfs.PARENT, 'v'], config, None, runner)
    assert [(s['name'], s['status']) for s in info['snapshots']] == [('s1', 'available'), ('s2', 'available')]
    assert info['replacing'] == 's2' and info['token'] is None
    source = chain('s1', 's2')
    guids = {'s1': '1011', 's2': '1012'}
    plan = plan_replica(source, source[1], lambda s: guids[s.name], info, WHERE, 'v')
    assert plan.mode == 'none' and plan.abort and plan.replica['status'] == 'available'
    assert plan.actions == ['finish what the receive of replica snapshot s2 left on volume v on ' + WHERE]
    with pytest.raises(StorageError, match='has a snapshot s2 that is not a replica of this one'):
        plan_replica(source, source[1], lambda s: 'another', info, WHERE, 'v')  # the guid decides, not the name
    later = chain('s1', 's2', 's3')
    guids['s3'] = '1013'
    plan = plan_replica(later, later[2], lambda s: guids[s.name], info, WHERE, 'v')
    assert plan.mode == 'incremental' and plan.base == 's2' and plan.abort  # from s2, once its mark is gone
    assert plan.actions[0].startswith('finish what the receive of replica snapshot s2')
    assert inherited == []
    assert serve(['abort', 'zfs', zfs.PARENT, 'v'], config, None, runner) == {'aborted': 'v'}
    assert inherited[0] == ['zfs', 'inherit', 'stratum:status', zfs.PARENT + '/v']


def _marking_zfs_host(rows, **answers):
    """A canned ZFS host of ``rows`` on which ``zfs set``/``zfs inherit`` of stratum:status change the zvol's
    mark, which its snapshots inherit, and ``zfs receive`` makes the snapshot its stream announced."""
    from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs

    def mark(dataset, value):
        for data, extra in rows:
            if data['name'] == dataset or data['name'].startswith(dataset + '@'):
                extra['stratum:status'] = value
        return 0, '', ''
    host = zfs.zfs_host(rows, get=lambda argv: (0, 'receive_resume_token\t-\nwritten\t0\n', ''),
                        set=lambda argv: mark(argv[-1], argv[2].split('=', 1)[1]),
                        inherit=lambda argv: mark(argv[-1], '-'), **answers)

    class Sink(io.BytesIO):
        def close(self):
            self.value = self.getvalue()
            super().close()

    class Received:
        """``zfs receive``: takes the stream, then makes the snapshot (with the zvol's mark, inherited); a zvol
        it creates gets the mark its ``-o`` names."""

        def __init__(self, argv):
            self.stdin, self.stderr, self.returncode, self.argv = Sink(), io.BytesIO(b''), None, argv

        def wait(self):
            data, dataset = self.stdin.value, self.argv[-1]
            toguid = struct.unpack_from('<Q', data, 40)[0]
            name = data[56:56 + 256].split(b'\0', 1)[0].decode().split('@', 1)[1]
            if not any(d['name'] == dataset for d, _extra in rows):
                marked = self.argv[self.argv.index('-o') + 1].split('=', 1)[1]
                rows.append(zfs.row(dataset, 'volume', 32 << 20, 20 + len(rows), extra={'stratum:status': marked}))
            volume = next(extra for d, extra in rows if d['name'] == dataset)
            rows.append(zfs.row(dataset + '@' + name, 'snapshot', 32 << 20, 20 + len(rows), extra=dict(volume),
                                guid=str(toguid)))
            self.returncode = 0

    class CannedRunner:
        def run(self, argv, check=True, error=None, **kwargs):
            host.commands.append(list(argv))
            rc, out, err = host.answers[argv[0]](argv)
            return CommandResult(argv, rc, out, err)

        def spawn(self, argv, **kwargs):
            host.commands.append(list(argv))
            return Received(list(argv))
    host.rows = rows
    return host, CannedRunner()


def _zfs_stream(toguid, fromguid, name):
    return struct.pack('<II QQQ II QQ 256s', 0, 0, 0x2F5BACBAC, 1, 0, 3, 0xc, toguid, fromguid,
                       ('src/v@' + name).encode()) + b'data'


@pytest.mark.parametrize('base', [None, '1012'], ids=['first', 'incremental'])
def test_a_zfs_receive_marks_the_zvol_with_the_snapshot_and_its_guid(base, tmp_path, monkeypatch):
    from ansible_collections.stratum.storage.plugins.module_utils import _files
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    rows = zfs.base_rows() if base else []
    host, runner = _marking_zfs_host(rows)
    stream = io.BufferedReader(io.BytesIO(_zfs_stream(4242, int(base or 0), 's3')))
    words = ['receive', 'zfs', zfs.PARENT, 'v', 's3', '4242', base or '-', 'new']
    answer = serve(words, {'zfs': [zfs.PARENT]}, stream, runner)
    assert answer['snapshot']['name'] == 's3' and answer['snapshot']['status'] == 'available'
    writes = [argv for argv in host.commands if argv[1] not in ('list', 'get')]
    if base:
        assert writes == [['zfs', 'set', 'stratum:status=receiving:s3:4242', zfs.PARENT + '/v'],
                          ['zfs', 'receive', '-s', '-u', zfs.PARENT + '/v'],
                          ['zfs', 'inherit', 'stratum:status', zfs.PARENT + '/v']]
    else:
        assert writes == [['zfs', 'receive', '-s', '-u', '-o', 'stratum:status=inbound:s3:4242', zfs.PARENT + '/v'],
                          ['zfs', 'inherit', 'stratum:status', zfs.PARENT + '/v']]


def _arrived_rows(mark, guid='1011'):
    """Zvol v whose first replica s1 (guid 1011 as ZFS lists it) arrived, with ``mark`` left on it."""
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    return [zfs.row(zfs.PARENT + '/v', 'volume', 32 << 20, 10, extra={'stratum:status': mark}),
            zfs.row(zfs.PARENT + '/v@s1', 'snapshot', 32 << 20, 11, extra={'stratum:status': mark}, guid=guid)]


@pytest.mark.parametrize('mark, arrived', [
    ('inbound:s1:1011', True), ('receiving:s1:1011', True), ('inbound:s1', True),
    ('inbound:s1:1999', False), ('receiving:s1:1999', False),
], ids=['first', 'incremental', 'first-0.2.0', 'first-other-guid', 'incremental-other-guid'])
def test_a_zfs_snapshot_that_arrived_under_its_mark_lists_available(mark, arrived, tmp_path, monkeypatch):
    """ZFS makes a received snapshot only once all of it is there: when the mark names it (and its guid), the
    receiver was killed before it dropped the mark. A snapshot of that name with another guid is not it."""
    from ansible_collections.stratum.storage.plugins.module_utils import _files
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    host, runner = _marking_zfs_host(_arrived_rows(mark))
    info = serve(['info', 'zfs', zfs.PARENT, 'v'], {'zfs': [zfs.PARENT]}, None, runner)
    first = mark.startswith('inbound:')
    assert info['volume']['status'] == ('available' if arrived or not first else 'inbound')
    assert [(s['name'], s['status']) for s in info['snapshots']] == [('s1', 'available' if arrived else 'inbound')]
    assert info['replacing'] == ('s1' if arrived else None)


@pytest.mark.parametrize('check', [False, True])
def test_the_target_modules_finish_a_first_zfs_replica_left_marked(check, tmp_path, monkeypatch):
    """A snapshot of the replica volume and a clone of its replica snapshot on the target: each drops the mark
    first (check mode says it would) instead of refusing the volume as inbound."""
    from ansible_collections.stratum.storage.plugins.module_utils import _files
    from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
    from ansible_collections.stratum.storage.tests.unit.helpers import run_canned
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    finish = 'finish what the receive of replica snapshot s1 left on volume v'
    args = dict(backend='zfs', zfs={'parent': zfs.PARENT})
    host, _runner = _marking_zfs_host(_arrived_rows('inbound:s1:1011'), snapshot=lambda argv: (0, '', ''),
                                      clone=lambda argv: (0, '', ''))
    taken = run_canned(snapshot, dict(args, volume='v', name='s2'), host, check=check)
    assert not taken['failed'] and taken['changed'], taken
    assert taken['actions'][0] == finish and taken['actions'][1].startswith('take snapshot s2 of volume v')
    writes = [argv[:2] for argv in host.commands if argv[1] not in ('list', 'get')]
    assert writes == ([] if check else [['zfs', 'inherit'], ['zfs', 'snapshot']])
    assert [extra.get('stratum:status') for _data, extra in host.rows] == (
        ['inbound:s1:1011'] * 2 if check else ['-', '-'])
    host, _runner = _marking_zfs_host(_arrived_rows('inbound:s1:1011'), snapshot=lambda argv: (0, '', ''),
                                      clone=lambda argv: (0, '', ''))
    cloned = run_canned(volume, dict(args, name='c', source_volume='v', source_snapshot='s1'), host, check=check)
    assert not cloned['failed'] and cloned['changed'] and cloned['actions'][0] == finish, cloned
    assert ['zfs', 'inherit', 'stratum:status', zfs.PARENT + '/v'] not in host.commands if check else \
        host.commands.count(['zfs', 'inherit', 'stratum:status', zfs.PARENT + '/v']) == 1


def test_the_target_modules_refuse_a_zfs_volume_whose_mark_names_another_snapshot():
    from ansible_collections.stratum.storage.plugins.modules import snapshot
    from ansible_collections.stratum.storage.tests.unit.helpers import run_canned
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    host, _runner = _marking_zfs_host(_arrived_rows('inbound:s1:1999'))
    refused = run_canned(snapshot, dict(backend='zfs', zfs={'parent': zfs.PARENT}, volume='v', name='s2'), host)
    assert refused['failed'] and 'Volume v is receiving a replica (status inbound)' in refused['msg']
    assert all(argv[1] == 'list' for argv in host.commands)


def test_a_snapshot_left_to_finish_that_is_not_inbound_is_taken_as_it_is_listed():
    source = chain('s1', 's2')
    answer = dict(target([('s1', 'g-s1', 'available'), ('s2', 'g-s2', 'error')]), replacing='s2')
    with pytest.raises(StorageError, match='changed since the common snapshot'):
        plan(source, 's2', answer)


def test_a_delete_on_the_zfs_receiver_lists_once():
    from ansible_collections.stratum.storage.plugins.module_utils._receiver import serve
    from ansible_collections.stratum.storage.tests.unit.plugins.modules import test_zfs_canned as zfs
    rows = [zfs.row(zfs.PARENT + '/v', 'volume', 32 << 20, 10), zfs.row(zfs.PARENT + '/v@s1', 'snapshot', 32 << 20, 11),
            zfs.row(zfs.PARENT + '/v@s2', 'snapshot', 32 << 20, 12)]
    host, runner = _zfs_receiver_host(rows)
    plain = host.answers['zfs']
    host.answers['zfs'] = lambda argv: (0, '', '') if argv[1] == 'destroy' else plain(argv)
    assert serve(['delete', 'zfs', zfs.PARENT, 'v', 's1', '1011'], {'zfs': [zfs.PARENT]}, None, runner) == {
        'deleted': 's1'}
    assert [c[1] for c in host.commands] == ['list', 'destroy']
