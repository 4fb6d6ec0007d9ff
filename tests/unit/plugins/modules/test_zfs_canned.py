# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ZFS backend against canned ``zfs list -H -p`` output: which commands a run issues, and what it reports."""

from __future__ import annotations

import pytest

from ansible_collections.stratum.storage.plugins.module_utils._zfs import COLUMNS
from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import CannedHost, run_canned

MIB = 1 << 20
PARENT = 'tank/volumes'
ZFS = dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'compression': 'lz4'}})


def row(name, kind, volsize, txg, extra=None, **values):
    data = dict.fromkeys(COLUMNS, '-')
    data.update(name=name, type=kind, guid=str(1000 + txg), volsize=str(volsize), used='65536',
                referenced='65536', createtxg=str(txg), creation=str(1795000000 + txg), defer_destroy='off',
                userrefs='0', clones='', refreservation='0' if kind == 'snapshot' else str(volsize + MIB))
    if kind == 'volume':
        data['volblocksize'] = '16384'
    data.update(values)
    return data, dict(extra or {})


def zfs_host(rows, properties=('compression',), parent=True, **answers):
    """A host whose ``zfs list`` prints ``rows`` in the columns the command asks for.

    As ZFS does, a listing of ``PARENT`` (``-d 2``) prints every row under it, a
    listing of one zvol (``-d 1``) prints the zvol and its snapshots, and a dataset
    that is not there is refused (rc 1, ``dataset does not exist``); without
    ``parent`` the parent is not there either. Any other
    ``zfs`` subcommand is answered by ``answers``; one without an answer fails the
    test, as any command other than ``zfs`` does (``CannedHost``).
    """
    def zfs(argv):
        if argv[1] != 'list':
            if argv[1] not in answers:
                raise AssertionError('unexpected command %r' % (argv,))
            return answers[argv[1]](argv)
        assert argv[2:4] == ['-H', '-p']
        target = argv[-1]
        columns = argv[argv.index('-o') + 1].split(',')
        if not parent and (target + '/').startswith(PARENT + '/'):
            return 1, '', "cannot open '%s': dataset does not exist\n" % target
        if '-d' in argv:
            depth = int(argv[argv.index('-d') + 1])
            assert (target, depth) == (PARENT, 2) or (target.startswith(PARENT + '/') and depth == 1), argv
        else:
            assert target == PARENT and columns == ['name'], argv
            return 0, PARENT + '\n', ''
        lines, found = [], target == PARENT
        for data, extra in rows:
            values = dict(data, **extra)
            name = values['name']
            found = found or name == target
            if target == PARENT or name == target or name.startswith(target + '@'):
                lines.append('\t'.join(values.get(c, 'lz4' if c in properties else '-') for c in columns))
        if not found:
            return 1, '', "cannot open '%s': dataset does not exist\n" % target
        return 0, '\n'.join(lines) + '\n', ''
    return CannedHost(zfs=zfs)


def base_rows():
    return [row(PARENT + '/v', 'volume', 32 * MIB, 10),
            row(PARENT + '/v@s1', 'snapshot', 32 * MIB, 11),
            row(PARENT + '/v@s2', 'snapshot', 32 * MIB, 12)]


def listings(host):
    return [c for c in host.commands if c[:2] == ['zfs', 'list']]


@pytest.mark.parametrize('check', [False, True])
@pytest.mark.parametrize('size', ['32M', '32MiB', 32 * MIB, 32 * MIB - 100, '32753K'])
def test_volume_noop_is_one_zfs_list(size, check):
    host = zfs_host(base_rows())
    result = run_canned(volume, dict(ZFS, name='v', size=size), host, check=check)
    assert not result['failed'] and not result['changed'], result
    assert host.commands == listings(host) and len(host.commands) == 1
    details = result['volume']['details']
    assert details['dataset'] == PARENT + '/v' and details['path'] == '/dev/zvol/tank/volumes/v'
    assert details['guid'] == '1010' and details['properties'] == {'compression': 'lz4'}


@pytest.mark.parametrize('check', [False, True])
def test_snapshot_noop_is_one_zfs_list(check):
    host = zfs_host(base_rows())
    result = run_canned(snapshot, dict(ZFS, volume='v', name='s2'), host, check=check)
    assert not result['changed'] and len(host.commands) == 1
    assert result['snapshot']['parent'] == 's1'


def test_second_delete_of_a_pending_snapshot_is_a_noop():
    rows = base_rows()
    rows[1][0].update(defer_destroy='on', clones=PARENT + '/c')
    rows.append(row(PARENT + '/c', 'volume', 32 * MIB, 13, origin=PARENT + '/v@s1'))
    host = zfs_host(rows)
    result = run_canned(snapshot, dict(ZFS, volume='v', name='s1', state='absent'), host)
    assert not result['changed'] and result['snapshot']['status'] == 'pending_delete'
    assert len(host.commands) == 1


def test_delete_with_a_clone_is_deferred_and_never_recursive():
    rows = base_rows()
    rows[1][0].update(clones=PARENT + '/c')
    rows.append(row(PARENT + '/c', 'volume', 32 * MIB, 13, origin=PARENT + '/v@s1'))
    host = zfs_host(rows, destroy=lambda argv: (0, '', ''))
    check = run_canned(snapshot, dict(ZFS, volume='v', name='s1', state='absent'), host, check=True)
    assert check['changed'] and check['snapshot']['status'] == 'pending_delete'
    assert all(c[1] == 'list' for c in host.commands)
    run_canned(snapshot, dict(ZFS, volume='v', name='s1', state='absent'), host)
    destroys = [c for c in host.commands if c[1] == 'destroy']
    assert destroys == [['zfs', 'destroy', '-d', PARENT + '/v@s1']]
    plain = zfs_host(base_rows(), destroy=lambda argv: (0, '', ''))
    run_canned(snapshot, dict(ZFS, volume='v', name='s2', state='absent'), plain)
    assert [c for c in plain.commands if c[1] == 'destroy'] == [['zfs', 'destroy', PARENT + '/v@s2']]
    for command in host.commands + plain.commands:
        if command[1] != 'list':
            assert '-r' not in command and '-R' not in command


def test_forced_volume_delete_names_every_snapshot():
    host = zfs_host(base_rows(), destroy=lambda argv: (0, '', ''))
    refused = run_canned(volume, dict(ZFS, name='v', state='absent'), zfs_host(base_rows()))
    assert refused['failed'] and 'force=true' in refused['msg']
    result = run_canned(volume, dict(ZFS, name='v', state='absent', force=True), host)
    assert result['changed']
    assert [c for c in host.commands if c[1] == 'destroy'] == [
        ['zfs', 'destroy', PARENT + '/v@s1,s2'], ['zfs', 'destroy', PARENT + '/v']]


def test_forced_delete_refuses_while_clones_depend():
    rows = base_rows()
    rows[1][0].update(clones=PARENT + '/c')
    host = zfs_host(rows)
    result = run_canned(volume, dict(ZFS, name='v', state='absent', force=True), host)
    assert result['failed'] and 'tank/volumes/c' in result['msg']
    assert all(c[1] == 'list' for c in host.commands)


def test_properties_compared_in_parsable_form():
    rows = [row(PARENT + '/v', 'volume', 32 * MIB, 10)]
    same = zfs_host(rows)
    config = {'parent': PARENT, 'properties': {'compression': 'lz4', 'volblocksize': '16K'}}
    result = run_canned(volume, dict(backend='zfs', zfs=config, name='v'), same)
    assert not result['changed'], result
    differ = zfs_host(rows, set=lambda argv: (0, '', ''))
    config = {'parent': PARENT, 'properties': {'compression': False}}
    check = run_canned(volume, dict(backend='zfs', zfs=config, name='v'), differ, check=True)
    assert check['changed'] and check['volume']['details']['properties'] == {'compression': 'off'}
    assert all(c[1] == 'list' for c in differ.commands)
    run_canned(volume, dict(backend='zfs', zfs=config, name='v'), differ)
    assert ['zfs', 'set', 'compression=off', PARENT + '/v'] in differ.commands
    fixed = run_canned(volume, dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'volblocksize': '8K'}},
                                    name='v'), zfs_host(rows))
    assert fixed['failed'] and 'only when a volume is created' in fixed['msg']


def test_create_passes_blocksize_sparse_and_properties():
    host = zfs_host([], create=lambda argv: (0, '', ''))
    config = {'parent': PARENT, 'sparse': True, 'properties': {'compression': 'on'}}
    result = run_canned(volume, dict(backend='zfs', zfs=config, name='n', size=10 * MIB + 1), host)
    assert result['changed']
    create = next(c for c in host.commands if c[1] == 'create')
    assert create == ['zfs', 'create', '-V', str(10 * MIB + 16384), '-s', '-o', 'compression=on',
                      '-o', 'volblocksize=16384', PARENT + '/n']


def test_statuses():
    rows = base_rows()
    rows[0][0]['receive_resume_token'] = '1-abc'
    rows[2][0]['stratum:status'] = 'inbound'
    host = zfs_host(rows)
    assert run_canned(volume_info, dict(ZFS), host)['volumes'][0]['status'] == 'inbound'
    snaps = run_canned(snapshot_info, dict(ZFS), zfs_host(rows))['snapshots']
    assert [s['status'] for s in snaps] == ['available', 'inbound']


def test_five_thousand_snapshots_are_one_command():
    rows = [row(PARENT + '/v%d' % v, 'volume', 8 * MIB, v * 1000) for v in range(5)]
    for index in range(5000):
        volume_index = index % 5
        rows.append(row(PARENT + '/v%d@s%04d' % (volume_index, index), 'snapshot', 8 * MIB,
                        volume_index * 1000 + 1 + index // 5))
    host = zfs_host(rows)
    snapshots = run_canned(snapshot_info, dict(ZFS), host)['snapshots']
    assert len(host.commands) == 1 and len(snapshots) == 5000
    first = [s for s in snapshots if s['volume'] == 'v0']
    assert first[1]['parent'] == first[0]['name'] and first[0]['parent'] is None


def test_datasets_outside_the_layout_are_not_listed():
    rows = base_rows() + [row(PARENT + '/fs/deep', 'volume', MIB, 20), row('tank/other', 'volume', MIB, 21)]
    host = zfs_host(rows)
    assert [v['name'] for v in run_canned(volume_info, dict(ZFS), host)['volumes']] == ['v']


@pytest.mark.parametrize('args, text', [
    (dict(ZFS, name='a@b', size='8M'), 'invalid'),
    (dict(ZFS, name='v', size='8M', format='qcow2'), 'format raw only'),
    (dict(backend='zfs', zfs={'parent': 'tank//x'}, name='v', size='8M'), 'zfs.parent'),
    (dict(backend='zfs', zfs={'parent': PARENT + '\n'}, name='v', size='8M'), 'zfs.parent'),
    (dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'compression\n': 'lz4'}}, name='v', size='8M'),
     'property name'),
    (dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'volsize': '1G'}}, name='v', size='8M'),
     'managed by the module'),
    (dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'Bad Name': 'x'}}, name='v', size='8M'),
     'property name'),
    (dict(backend='zfs', zfs={'parent': 'tank/' + 'p' * 130}, name='v' * 128, size='8M'), 'too long'),
])
def test_bad_input_runs_nothing(args, text):
    host = zfs_host(base_rows())
    result = run_canned(volume, args, host)
    assert result['failed'] and text in result['msg'], result
    assert host.commands == []


# The bad input that the test hosts once ran against a real pool: each fails with one
# sentence before any command.
@pytest.mark.parametrize('module, args', [(volume, dict(ZFS, name=name, size='8M'))
                                          for name in ('a@b', 'a/b', '../x', 'a b', 'a;b', 'v\n')] +
                         [(volume, dict(ZFS, name='sized', size=size)) for size in ('-1', '10X', 0, 'abc')] +
                         [(snapshot, dict(ZFS, volume='v', name=name)) for name in ('a@b', 'a/b', '')])
def test_bad_names_and_sizes_are_one_sentence_and_run_nothing(module, args):
    host = zfs_host(base_rows())
    result = run_canned(module, args, host)
    assert result['failed'] and '\n' not in result['msg'].strip() and result['msg'].endswith('.'), result
    assert host.commands == []


# A clone that ZFS would refuse is refused before any command; a failed clone leaves
# nothing behind, and a clone-<name> snapshot left by an earlier run is reused.
@pytest.mark.parametrize('check', [False, True])
def test_clone_with_another_volblocksize_is_refused_before_any_command(check):
    host = zfs_host(base_rows())
    args = dict(backend='zfs', zfs={'parent': PARENT, 'properties': {'volblocksize': '8K'}},
                name='c', source_volume='v')
    result = run_canned(volume, args, host, check=check)
    assert result['failed'] and 'keeps the volblocksize of its source (16384)' in result['msg'], result
    assert host.commands == listings(host)


def test_failed_clone_removes_the_snapshot_it_made_and_a_retry_succeeds():
    rows = base_rows()
    made = []

    def snapshot_cmd(argv):
        rows.append(row(argv[-1], 'snapshot', 32 * MIB, 20))
        made.append(argv[-1])
        return 0, '', ''

    def destroy(argv):
        rows[:] = [r for r in rows if r[0]['name'] != argv[-1]]
        return 0, '', ''

    failing = zfs_host(rows, snapshot=snapshot_cmd, destroy=destroy,
                       clone=lambda argv: (1, '', "cannot create 'tank/volumes/c': out of space"))
    result = run_canned(volume, dict(ZFS, name='c', source_volume='v'), failing)
    assert result['failed'] and 'out of space' in result['msg'], result
    assert made == [PARENT + '/v@clone-c']
    assert ['zfs', 'destroy', PARENT + '/v@clone-c'] in failing.commands
    assert not any(r[0]['name'].endswith('@clone-c') for r in rows)

    def clone(argv):
        rows.append(row(argv[-1], 'volume', 32 * MIB, 21, origin=argv[-2]))
        return 0, '', ''

    retry = zfs_host(rows, snapshot=snapshot_cmd, clone=clone)
    result = run_canned(volume, dict(ZFS, name='c', source_volume='v'), retry)
    assert not result['failed'] and result['changed'], result
    assert result['volume']['origin'] == {'volume': 'v', 'snapshot': 'clone-c'}


def test_clone_reuses_a_clone_snapshot_left_by_an_earlier_run():
    rows = base_rows() + [row(PARENT + '/v@clone-c', 'snapshot', 32 * MIB, 13)]

    def clone(argv):
        rows.append(row(argv[-1], 'volume', 32 * MIB, 21, origin=argv[-2]))
        return 0, '', ''

    host = zfs_host(rows, clone=clone)
    result = run_canned(volume, dict(ZFS, name='c', source_volume='v'), host)
    assert not result['failed'] and result['changed'], result
    changes = [c for c in host.commands if c[:2] != ['zfs', 'list']]
    assert changes == [['zfs', 'clone', '-o', 'compression=lz4', PARENT + '/v@clone-c', PARENT + '/c']]


def test_check_mode_predicts_the_clone_as_the_real_run_lists_it():
    rows = base_rows()

    def clone(argv):
        rows.append(row(argv[-1], 'volume', 32 * MIB, 21, origin=argv[-2], refreservation='none'))
        return 0, '', ''

    args = dict(ZFS, name='c', source_volume='v', source_snapshot='s1')
    predicted = run_canned(volume, args, zfs_host(list(rows)), check=True)['volume']
    real = run_canned(volume, args, zfs_host(rows, clone=clone))['volume']
    for key in ('dataset', 'path', 'volblocksize', 'sparse', 'format', 'properties'):
        assert predicted['details'][key] == real['details'][key], key
    assert predicted['size'] == real['size'] and predicted['origin'] == real['origin']


@pytest.mark.parametrize('check', [False, True])
def test_snapshot_create_is_one_zfs_snapshot(check):
    host = zfs_host(base_rows(), snapshot=lambda argv: (0, '', ''))
    result = run_canned(snapshot, dict(ZFS, volume='v', name='s3'), host, check=check)
    assert result['changed'], result
    if check:  # a real run returns the snapshot as the host lists it afterwards: this canned host does not change
        assert result['snapshot']['parent'] == 's2'
    writes = [c for c in host.commands if c[:2] != ['zfs', 'list']]
    assert writes == ([] if check else [['zfs', 'snapshot', PARENT + '/v@s3']])


@pytest.mark.parametrize('module, args', [
    (volume, dict(ZFS, name='v', size='32M')),
    (volume, dict(ZFS, name='v', size='64M')),
    (snapshot, dict(ZFS, volume='v', name='s2')),
    (snapshot, dict(ZFS, volume='v', name='s3')),
])
@pytest.mark.parametrize('check', [False, True])
def test_a_run_lists_its_own_volume_only(module, args, check):
    """However many volumes the parent holds, a run on one lists that zvol and its snapshots, not the parent."""
    rows = base_rows() + [row(PARENT + '/other%03d' % n, 'volume', MIB, 100 + n) for n in range(200)]
    host = zfs_host(rows, snapshot=lambda argv: (0, '', ''), set=lambda argv: (0, '', ''))
    result = run_canned(module, args, host, check=check)
    assert not result['failed'], result
    assert listings(host) and all(c[-1] == PARENT + '/v' and c[c.index('-d') + 1] == '1' for c in listings(host))


@pytest.mark.parametrize('check', [False, True])
def test_a_new_volume_is_read_with_its_parent(check):
    """ZFS refuses to list a zvol that is not there; the parent is read then, so a missing parent is an error."""
    host = zfs_host(base_rows(), create=lambda argv: (0, '', ''))
    result = run_canned(volume, dict(ZFS, name='new', size='8M'), host, check=check)
    assert not result['failed'] and result['changed'], result
    assert listings(host)[:2] == [
        ['zfs', 'list', '-H', '-p', '-t', 'volume,snapshot', '-r', '-d', '1', '-o', ','.join(list(COLUMNS) + ['compression']),
         PARENT + '/new'],
        ['zfs', 'list', '-H', '-p', '-o', 'name', PARENT]]
    assert [c[1] for c in host.commands if c[1] != 'list'] == ([] if check else ['create'])
    gone = run_canned(volume, dict(ZFS, name='new', state='absent'), zfs_host(base_rows()), check=check)
    assert not gone['failed'] and not gone['changed'] and gone['volume'] is None


@pytest.mark.parametrize('module, args', [
    (volume, dict(ZFS, name='new', size='8M')),
    (volume, dict(ZFS, name='new', state='absent')),
    (snapshot, dict(ZFS, volume='new', name='s1')),
])
def test_a_missing_parent_is_one_sentence_and_changes_nothing(module, args):
    host = zfs_host([], parent=False)
    result = run_canned(module, args, host)
    assert result['failed'] and result['msg'].startswith('ZFS dataset %s cannot be listed: ' % PARENT), result
    assert 'dataset does not exist' in result['msg'] and '\n' not in result['msg']
    assert all(c[1] == 'list' for c in host.commands)


def test_a_listing_refused_for_another_reason_is_an_error():
    def refused(argv):
        return 1, '', "cannot open '%s/v': permission denied\n" % PARENT
    host = CannedHost(zfs=refused)
    result = run_canned(volume, dict(ZFS, name='v', size='8M'), host)
    assert result['failed'] and result['msg'] == (
        'ZFS dataset %s/v cannot be listed: cannot open \'%s/v\': permission denied (rc=1).' % (PARENT, PARENT))
    assert len(host.commands) == 1


def test_what_was_read_before_the_lock_is_not_used_under_it(monkeypatch, tmp_path):
    """A clone's source read before the lock, and not again under it, is read afresh when it is settled."""
    from ansible_collections.stratum.storage.plugins.module_utils import _files
    from ansible_collections.stratum.storage.plugins.module_utils._zfs import ZfsBackend

    monkeypatch.setattr(_files, 'HOST_LOCK_DIR', str(tmp_path / 'locks'))
    monkeypatch.setattr(ZfsBackend, 'lock_turns', lambda self, volumes: None)  # another run took the lock
    before = base_rows()
    before[0][0]['stratum:status'] = 'receiving:s1:1011'  # a receive of s1 into v was cut after s1 arrived
    # meanwhile another run made the clone c and dropped v's mark
    after = base_rows() + [row(PARENT + '/c', 'volume', 32 * MIB, 20, origin=PARENT + '/v@s1')]
    seen = []

    def listing(argv):
        rows = after if PARENT + '/v' in seen else before
        if argv[1] == 'list':
            seen.append(argv[-1])
        return zfs_host(rows).answers['zfs'](argv)
    host = CannedHost(zfs=listing)
    result = run_canned(volume, dict(ZFS, name='c', size='32M', source_volume='v', source_snapshot='s1'), host)
    assert not result['failed'] and not result['changed'], result
    assert seen == [PARENT + '/c', PARENT, PARENT + '/v', PARENT + '/c', PARENT + '/v']


def test_the_info_modules_read_one_volume_when_asked_for_one():
    rows = base_rows() + [row(PARENT + '/w', 'volume', MIB, 30), row(PARENT + '/w@a', 'snapshot', MIB, 31)]
    host = zfs_host(rows)
    assert [v['name'] for v in run_canned(volume_info, dict(ZFS, name='w'), host)['volumes']] == ['w']
    assert [s['name'] for s in run_canned(snapshot_info, dict(ZFS, volume='w'), host)['snapshots']] == ['a']
    assert [c[-1] for c in listings(host)] == [PARENT + '/w'] * 2
    everything = zfs_host(rows)
    assert len(run_canned(snapshot_info, dict(ZFS), everything)['snapshots']) == 3
    assert [c[-1] for c in listings(everything)] == [PARENT]


def test_a_name_too_long_for_zfs_is_listed_as_absent():
    """No zvol can have it, so the info modules list nothing; only the parent is read, as for any missing zvol."""
    missing = zfs_host(base_rows())
    assert run_canned(volume_info, dict(ZFS, name='x'), missing)['volumes'] == []
    assert [c[-1] for c in listings(missing)] == [PARENT + '/x', PARENT]
    parent = 'tank/' + 'p' * 140
    host = CannedHost(zfs=lambda argv: (0, parent + '\n', ''))
    result = run_canned(volume_info, dict(ZFS, zfs={'parent': parent}, name='x' * 120), host)
    assert not result['failed'] and result['volumes'] == [], result
    assert host.commands == [['zfs', 'list', '-H', '-p', '-o', 'name', parent]]
