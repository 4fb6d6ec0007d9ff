# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LVM backend against canned ``lvs`` JSON: which commands a run issues, and what it reports."""

from __future__ import annotations

import json

import pytest

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import CannedHost, run_canned

MIB = 1 << 20
EXTENT = 4 * MIB
READ_COMMANDS = {'lvs', 'vgs'}


def lv(name, size, tags=(), attr='-wi-a-----', segtype='linear', origin='', origin_size='', pool='',
       active='active', invalid='0', merging='0', data='', snap=''):
    return {'lv_name': name, 'lv_size': str(size), 'lv_attr': attr, 'lv_tags': ','.join(tags),
            'lv_uuid': 'uuid-' + name, 'segtype': segtype, 'origin': origin, 'origin_size': str(origin_size),
            'pool_lv': pool, 'data_percent': data, 'snap_percent': snap, 'lv_active': active,
            'lv_snapshot_invalid': invalid, 'lv_merging': merging, 'vg_extent_size': str(EXTENT)}


def volume_lv(name, size, **kw):
    return lv('volume-' + name, size, tags=['stratum_volume=' + name, 'stratum_created=20261122T010203.000001Z'],
              **kw)


def cow_lv(volume, name, origin_size, cow_size, created='20261122T020000.000000Z', attr='swi-a-s---', **kw):
    return lv('volume-%s.%s' % (volume, name), cow_size, attr=attr, origin='volume-' + volume,
              origin_size=origin_size, snap='1.00',
              tags=['stratum_volume=' + volume, 'stratum_snapshot=' + name, 'stratum_created=' + created], **kw)


def thin_snap_lv(volume, name, size, created='20261122T020000.000000Z'):
    return lv('volume-%s.%s' % (volume, name), size, attr='Vwi-a-tz--', segtype='thin', origin='volume-' + volume,
              pool='pool', data='3.00',
              tags=['stratum_volume=' + volume, 'stratum_snapshot=' + name, 'stratum_created=' + created])


POOL = lv('pool', 512 * MIB, attr='twi-aotz--', segtype='thin-pool', tags=['unrelated'])


def lvs_host(rows):
    def lvs(argv):
        assert '--reportformat' in argv and 'json' in argv and '--units' in argv and '--nosuffix' in argv
        return 0, json.dumps({'report': [{'lv': rows}]}), ''
    return CannedHost(lvs=lvs)


THICK = dict(backend='lvm', lvm={'vg': 'vg0'})
THIN = dict(backend='lvm', lvm={'vg': 'vg0', 'thin_pool': 'pool'})


@pytest.mark.parametrize('check', [False, True])
@pytest.mark.parametrize('size', ['64M', '64MiB', 65536 * 1024, 16 * EXTENT, 67108000, '65000K'])
def test_volume_noop_is_one_lvs(size, check):
    host = lvs_host([volume_lv('v', 64 * MIB), POOL])
    result = run_canned(volume, dict(THICK, name='v', size=size), host, check=check)
    assert not result['failed'] and not result['changed'], result
    assert host.names() == ['lvs']
    assert result['volume']['details']['path'] == '/dev/vg0/volume-v'


@pytest.mark.parametrize('check', [False, True])
def test_snapshot_noop_is_one_lvs(check):
    rows = [volume_lv('v', 64 * MIB), cow_lv('v', 's1', 64 * MIB, 68 * MIB), POOL]
    host = lvs_host(rows)
    result = run_canned(snapshot, dict(THICK, volume='v', name='s1'), host, check=check)
    assert not result['changed'] and host.names() == ['lvs']
    absent = lvs_host(rows)
    result = run_canned(snapshot, dict(THICK, volume='v', name='gone', state='absent'), absent, check=check)
    assert not result['changed'] and absent.names() == ['lvs']


@pytest.mark.parametrize('count', [1, 10, 400])
def test_one_listing_serves_any_number_of_volumes(count):
    rows = [POOL]
    for index in range(count):
        rows.append(volume_lv('v%d' % index, 8 * MIB))
        rows.append(cow_lv('v%d' % index, 'a', 8 * MIB, 12 * MIB, created='20261122T020000.000000Z'))
        rows.append(cow_lv('v%d' % index, 'b', 8 * MIB, 12 * MIB, created='20261122T030000.000000Z'))
    host = lvs_host(rows)
    volumes = run_canned(volume_info, dict(THICK), host)['volumes']
    snaps_host = lvs_host(rows)
    snapshots = run_canned(snapshot_info, dict(THICK), snaps_host)['snapshots']
    assert host.names() == ['lvs'] and snaps_host.names() == ['lvs']
    assert len(volumes) == count and len(snapshots) == 2 * count
    assert [s['parent'] for s in snapshots[:2]] == [None, 'a']


def test_check_mode_runs_only_reads():
    rows = [volume_lv('v', 64 * MIB, active='', attr='-wi-------'), POOL]
    cases = [
        (volume, dict(THICK, name='new', size='8M')),
        (volume, dict(THICK, name='v', size='128M')),
        (volume, dict(THICK, name='v')),  # inactive: activation is planned, never run
        (volume, dict(THICK, name='v', state='absent')),
        (snapshot, dict(THICK, volume='v', name='s9')),
        (volume, dict(THICK, name='c', source_volume='v')),
    ]
    for module, args in cases:
        host = lvs_host(rows)
        result = run_canned(module, args, host, check=True)
        assert result['changed'] and not result['failed'], (args, result)
        assert set(host.names()) <= READ_COMMANDS, (args, host.commands)


def test_inactive_volume_is_activated_in_a_real_run():
    host = lvs_host([volume_lv('v', 64 * MIB, active='', attr='-wi-------'), POOL])
    host.answers['lvchange'] = lambda argv: (0, '', '')
    result = run_canned(volume, dict(THICK, name='v', size='64M'), host)
    assert result['changed']
    assert ['lvchange', '-ay', '-K', 'vg0/volume-v'] in host.commands


def test_statuses_come_from_lvs_fields():
    rows = [volume_lv('v', 64 * MIB),
            cow_lv('v', 'ok', 64 * MIB, 68 * MIB, created='20261122T020000.000000Z'),
            cow_lv('v', 'full', 64 * MIB, 4 * MIB, created='20261122T030000.000000Z', invalid='1',
                   attr='swi-I-s---'),
            cow_lv('v', 'merging', 64 * MIB, 68 * MIB, created='20261122T040000.000000Z', merging='1',
                   attr='Swi-a-s---'),
            POOL]
    snapshots = run_canned(snapshot_info, dict(THICK, volume='v'), lvs_host(rows))['snapshots']
    by_name = dict((s['name'], s) for s in snapshots)
    assert [s['name'] for s in snapshots] == ['ok', 'full', 'merging']
    assert by_name['ok']['status'] == 'available' and by_name['ok']['size'] == 64 * MIB
    assert by_name['ok']['details']['cow_size'] == 68 * MIB
    assert by_name['full']['status'] == 'error' and 'overflowed' in by_name['full']['details']['reason']
    assert by_name['merging']['status'] == 'pending_delete'
    assert by_name['ok']['created'] == '2026-11-22T02:00:00Z'


def test_listing_reads_tags_not_names():
    rows = [volume_lv('v', 64 * MIB),
            lv('volume-w', 8 * MIB),  # named like ours, but without our tags
            lv('volume-v.s1', 8 * MIB, attr='swi-a-s---', origin='volume-v', origin_size=64 * MIB),
            POOL]
    host = lvs_host(rows)
    assert [v['name'] for v in run_canned(volume_info, dict(THICK), host)['volumes']] == ['v']
    assert run_canned(snapshot_info, dict(THICK), lvs_host(rows))['snapshots'] == []
    refused = run_canned(volume, dict(THICK, name='w', size='8M'), lvs_host(rows))
    assert refused['failed'] and 'not managed by stratum.storage' in refused['msg']


def test_thick_snapshot_size_options():
    rows = [volume_lv('v', 64 * MIB), POOL]
    expected = {None: None, '25%': 16 * MIB, '10M': 12 * MIB, '100%': None, '1G': None}
    for option, cow in expected.items():
        host = lvs_host(rows)
        host.answers['lvcreate'] = lambda argv: (0, '', '')
        config = {'vg': 'vg0', 'snapshot_size': option}
        result = run_canned(snapshot, dict(backend='lvm', lvm=config, volume='v', name='s'), host)
        assert result['changed'], result
        create = next(c for c in host.commands if c[0] == 'lvcreate')
        size = int(create[create.index('-L') + 1].rstrip('b'))
        if cow is None:
            # more than the origin: lvcreate reduces it to the largest usable size, which never overflows
            assert size > 64 * MIB
        else:
            assert size == cow
        assert create[-1] == 'vg0/volume-v' and '-s' in create


def test_thin_snapshot_is_created_active():
    host = lvs_host([lv('volume-t', 32 * MIB, attr='Vwi-a-tz--', segtype='thin', pool='pool',
                        tags=['stratum_volume=t']), POOL])
    host.answers['lvcreate'] = lambda argv: (0, '', '')
    run_canned(snapshot, dict(THIN, volume='t', name='s'), host)
    create = next(c for c in host.commands if c[0] == 'lvcreate')
    assert '-kn' in create and '-L' not in create
    assert 'stratum_snapshot=s' in create and create[-1] == 'vg0/volume-t'


@pytest.mark.parametrize('args, text', [
    (dict(THICK, name='a_tdata', size='8M'), 'reserves'),
    (dict(THICK, name='x' * 128, size='8M'), 'too long'),
    (dict(THICK, name='v', size='8M', format='qcow2'), 'format raw only'),
    (dict(backend='lvm', lvm={'vg': '-bad'}, name='v', size='8M'), 'volume group name'),
    (dict(backend='lvm', lvm={'vg': 'vg0\n'}, name='v', size='8M'), 'volume group name'),
    (dict(backend='lvm', lvm={'vg': 'vg0', 'snapshot_size': '150 %x'}, name='v', size='8M'), 'percentage'),
])
def test_bad_input_runs_nothing(args, text):
    host = lvs_host([POOL])
    result = run_canned(volume, args, host)
    assert result['failed'] and text in result['msg'], result
    assert host.commands == []


# The bad input that the test hosts once ran against a real volume group: each fails with
# one sentence before any command (the canned host records every command it is asked).
@pytest.mark.parametrize('module, args', [(volume, dict(THICK, name=name, size='8M'))
                                          for name in ('a;b', '../x', 'a b', '-x', 'a_tdata', 'v\n')] +
                         [(volume, dict(THICK, name='sized', size=size)) for size in ('-1', '10X', 0, 'abc')] +
                         [(snapshot, dict(THIN, volume='t', name=name)) for name in ('a.b', 'a;b', '')])
def test_bad_names_and_sizes_are_one_sentence_and_run_nothing(module, args):
    host = lvs_host([POOL])
    result = run_canned(module, args, host)
    assert result['failed'] and '\n' not in result['msg'].strip() and result['msg'].endswith('.'), result
    assert host.commands == []


def test_missing_thin_pool_is_one_sentence():
    host = lvs_host([volume_lv('v', 8 * MIB)])
    result = run_canned(volume, dict(THIN, name='n', size='8M'), host, check=True)
    assert result['failed'] and result['msg'] == 'Thin pool pool does not exist in volume group vg0.'


def test_interrupted_clone_lists_creating_and_is_only_deleted():
    rows = [lv('volume-c', 8 * MIB, tags=['stratum_volume=c', 'stratum_status=creating', 'stratum_origin=v']),
            POOL]
    listed = run_canned(volume_info, dict(THICK, name='c'), lvs_host(rows))['volumes']
    assert listed[0]['status'] == 'creating' and listed[0]['origin'] == {'volume': 'v', 'snapshot': None}
    host = lvs_host(rows)
    refused = run_canned(volume, dict(THICK, name='c', source_volume='v'), host)
    assert refused['failed'] and 'status creating' in refused['msg'] and host.names() == ['lvs']
    host.answers['lvremove'] = lambda argv: (0, '', '')
    deleted = run_canned(volume, dict(THICK, name='c', state='absent'), host)
    assert deleted['changed'] and ['lvremove', '--yes', 'vg0/volume-c'] in host.commands


def test_clone_of_a_thick_snapshot_copies_then_clears_creating():
    rows = [volume_lv('v', 64 * MIB), cow_lv('v', 's1', 64 * MIB, 68 * MIB), POOL]
    host = lvs_host(rows)
    for name in ('lvcreate', 'dd', 'lvchange'):
        host.answers[name] = lambda argv: (0, '', '')
    result = run_canned(volume, dict(THICK, name='c', source_volume='v', source_snapshot='s1'), host)
    assert result['changed'], result
    writes = [c for c in host.commands if c[0] != 'lvs']
    assert [c[0] for c in writes] == ['lvcreate', 'dd', 'lvchange']
    assert 'stratum_status=creating' in writes[0] and 'stratum_origin_snapshot=s1' in writes[0]
    assert writes[1][1:3] == ['if=/dev/vg0/volume-v.s1', 'of=/dev/vg0/volume-c']
    assert 'count=%d' % (64 * MIB) in writes[1]
    assert writes[2] == ['lvchange', '--deltag', 'stratum_status=creating', 'vg0/volume-c']


@pytest.mark.parametrize('tag, created', [
    ('20261122T235958.123456Z', '2026-11-22T23:59:58Z'),
    ('20240229T000000.000000Z', '2024-02-29T00:00:00Z'),
    ('20230229T000000.000000Z', None),  # not a leap year
    ('20261322T010203.000000Z', None),  # month 13
    ('20261122T250203.000000Z', None),  # hour 25
    ('2026112T010203.000000Z', None),  # not zero-padded as written
    ('20261122T010203Z', None),
    ('20261122T010203.0000001Z', None),
    ('', None),
])
def test_created_tag_is_read_as_written_or_not_at_all(tag, created):
    rows = [lv('volume-v', 64 * MIB, tags=['stratum_volume=v', 'stratum_created=' + tag]), POOL]
    volumes = run_canned(volume_info, dict(THICK), lvs_host(rows))['volumes']
    assert [(v['name'], v['created']) for v in volumes] == [('v', created)]


def test_a_listing_parses_each_lv_s_tags_once(monkeypatch):
    from ansible_collections.stratum.storage.plugins.module_utils import _lvm
    calls = []
    real = _lvm.parse_tags
    monkeypatch.setattr(_lvm, 'parse_tags', lambda text: calls.append(text) or real(text))
    rows = [volume_lv('v', 64 * MIB), thin_snap_lv('v', 's1', 64 * MIB), POOL]
    snapshots = run_canned(snapshot_info, dict(THIN), lvs_host(rows))['snapshots']
    assert [s['name'] for s in snapshots] == ['s1']
    assert len(calls) == len(rows)
