# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LVM backend: thick and thin logical volumes, COW and thin snapshots.

Naming, in volume group ``vg``:

- volume ``V`` is the LV ``volume-V``;
- snapshot ``S`` of volume ``V`` is the LV ``volume-V.S``.

Volume and snapshot names never contain ``.``, so a volume LV has none and a
snapshot LV has exactly one, and the split is unambiguous. The names are only
where things are created; what a listing reports comes from our LV tags:

- ``stratum_volume=V`` on every LV we manage;
- ``stratum_snapshot=S`` on a snapshot;
- ``stratum_created=<UTC time>`` when it was made (orders the snapshots);
- ``stratum_origin=V`` and ``stratum_origin_snapshot=S`` on a clone;
- ``stratum_status=creating`` while a clone is being copied;
- on a replica (``_replica``): ``stratum_identity=<the source snapshot's identity>``
  on the snapshot, and while it arrives ``stratum_inbound=S`` (with
  ``stratum_inbound_identity`` and ``stratum_inbound_base``) on the LV being written;
  ``stratum_inbound_done=yes`` on a thin replica's snapshot once its data is complete,
  while the volume is being replaced by it (see ``settle``);
  ``stratum_hold_<hash>=<name>`` on a source snapshot holds it for a replica.

LVs without a ``stratum_volume`` tag are not listed and never changed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from contextlib import contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._backend import (
    Action, ListingBackend, Settings, Verb, in_chain_order)
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._files import host_lock_turns, host_locks
from ansible_collections.stratum.storage.plugins.module_utils._names import is_valid_name
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size, round_up

TAG = 'stratum_'
VOLUME_PREFIX = 'volume-'
LVS_FIELDS = ('lv_name', 'lv_size', 'lv_attr', 'lv_tags', 'lv_uuid', 'segtype', 'origin', 'origin_size', 'pool_lv',
              'data_percent', 'snap_percent', 'lv_active', 'lv_snapshot_invalid', 'lv_merging', 'vg_extent_size')
VG_NAME_RE = re.compile(r'[A-Za-z0-9+_.][A-Za-z0-9+_.-]*')
# Substrings LVM keeps for its own hidden LVs; an LV name containing one is refused by LVM.
RESERVED_SUBSTRINGS = ('_cdata', '_cmeta', '_corig', '_cpool', '_cvol', '_mimage', '_mlog', '_pmspare', '_rimage',
                       '_rmeta', '_tdata', '_tmeta', '_vdata', '_vdo', '_vorigin', '_wcorig')
DM_NAME_MAX = 127
PERCENT_RE = re.compile(r'\s*(\d+(?:\.\d+)?)\s*%\s*')
TIME_FORMAT = '%Y%m%dT%H%M%S.%fZ'
#: TIME_FORMAT as written (zero-padded), read without strptime: a listing of 1,000 LVs parses 1,000 of them
CREATED_RE = re.compile(r'(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.\d{6}Z')
#: the COW area of a temporary snapshot of a thick LV, in percent of the origin, unless lvm.snapshot_size is set
TEMPORARY_COW_PERCENT = 20
#: bytes a receive writes between two readings of how full its thin pool is
POOL_CHECK_BYTES = 256 << 20
THIN_DELTA_RE = re.compile(r'<(different|right_only|left_only)\s+begin="(\d+)"\s+length="(\d+)"\s*/>')
BLOCK_SIZE_RE = re.compile(r'data_block_size="(\d+)"')


def volume_lv(volume):
    return VOLUME_PREFIX + volume


def snapshot_lv(volume, snapshot):
    return '%s%s.%s' % (VOLUME_PREFIX, volume, snapshot)


def parse_tags(text):
    """Return our tags of an ``lv_tags`` value as a dict (``stratum_x=y`` -> ``{'x': 'y'}``)."""
    tags = {}
    for tag in (text or '').split(','):
        if tag.startswith(TAG) and '=' in tag:
            key, value = tag[len(TAG):].split('=', 1)
            tags[key] = value
    return tags


def _created(tags):
    """The ``created`` tag as ISO 8601 UTC, or None when it is not a time as this collection writes it."""
    match = CREATED_RE.fullmatch(tags.get('created', ''))
    if match is None:
        return None
    try:
        datetime.datetime(*(int(part) for part in match.groups()))
    except ValueError:  # a day or hour out of range
        return None
    return '%s-%s-%sT%s:%s:%sZ' % match.groups()


def _flag(value):
    return str(value).strip() in ('1', 'active')


def _is_cow(row):
    """True for a COW snapshot LV (``lv_attr`` type ``s``, or ``S`` while merging)."""
    return row.get('lv_attr', '')[:1] in ('s', 'S')


def _percent(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Scan:
    """One ``lvs`` listing of the volume group, indexed for the records built from it."""

    def __init__(self, rows):
        self.rows = rows
        self.by_name = dict((row['lv_name'], row) for row in rows)
        self.extent_size = int(rows[0]['vg_extent_size']) if rows else None
        self._ours = None

    def ours(self):
        """The rows that carry our volume tag, with their tags (parsed once per listing)."""
        if self._ours is None:
            self._ours = [(row, tags) for row, tags in ((row, parse_tags(row.get('lv_tags'))) for row in self.rows)
                          if 'volume' in tags]
        return iter(self._ours)


class LvmBackend(ListingBackend):
    name = 'lvm'
    deferred_delete = True  # a merging snapshot is consumed by LVM when the merge ends
    #: set by the replication receiver: only the LVs of the configured thin pool (or, without one, only thick
    #: LVs) are seen, so a place configured for receiving is a boundary within the volume group
    confined = False
    #: set by the replication receiver: a receive into the thin pool stops once the pool's data or metadata
    #: is this full (percent, read before writing and every POOL_CHECK_BYTES), so a replica does not fill the
    #: pool that other volumes write to
    pool_limit = None

    def __init__(self, runner, config):
        super().__init__(runner, config)
        self.vg = config.get('vg')
        self.thin_pool = config.get('thin_pool')
        self._extent_size = None
        for what, value in (('volume group', self.vg), ('thin pool', self.thin_pool)):
            if value is not None and (not VG_NAME_RE.fullmatch(value) or value in ('.', '..')):
                raise InvalidInputError('LVM %s name %r is invalid: use letters, digits and "+_.-", not starting '
                                        'with "-".' % (what, value))
        self.snapshot_request(1)  # validates lvm.snapshot_size before anything runs

    # -- configuration ------------------------------------------------------------------

    def snapshot_request(self, origin_size):
        """Bytes of COW space that ``lvm.snapshot_size`` asks for, for an origin of ``origin_size``."""
        value = self.config.get('snapshot_size')
        if value is None:
            return None
        if isinstance(value, str) and '%' in value:
            match = PERCENT_RE.fullmatch(value)
            if not match or float(match.group(1)) <= 0:
                raise InvalidInputError('lvm.snapshot_size %r is not a percentage of the origin such as 25%%.'
                                        % (value,))
            return int(-(-origin_size * float(match.group(1)) // 100))
        return parse_size(value, 'lvm.snapshot_size')

    def _check_lv_name(self, lv, what):
        for reserved in RESERVED_SUBSTRINGS:
            if reserved in lv:
                raise InvalidInputError('%s cannot be used on LVM: its LV name %s contains %s, which LVM reserves '
                                        'for internal volumes.' % (what, lv, reserved))
        dm_name = '%s-%s-cow' % ((self.vg or '').replace('-', '--'), lv.replace('-', '--'))
        if len(dm_name) > DM_NAME_MAX:
            raise InvalidInputError('%s is too long for LVM: its device-mapper name %s would be %d characters, '
                                    'more than %d.' % (what, dm_name, len(dm_name), DM_NAME_MAX))

    def validate_volume_name(self, name):
        self._check_lv_name(volume_lv(name), 'Volume name %r' % name)

    def validate_snapshot_name(self, name, volume=None):
        self._check_lv_name(snapshot_lv(volume or '', name), 'Snapshot name %r' % name)

    def lock(self, volumes):
        """Host-local locks on ``volumes``: only this host changes its volume groups."""
        return host_locks('lvm:%s' % self.vg, volumes)

    def lock_turns(self, volumes):
        return host_lock_turns('lvm:%s' % self.vg, volumes)

    # -- reading ------------------------------------------------------------------------

    def _lv(self, lv):
        return '%s/%s' % (self.vg, lv)

    def list_all(self):
        """Run the one listing command and return a ``Scan``."""
        result = self.runner.run(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '--binary',
                                  '-o', ','.join(LVS_FIELDS), self.vg],
                                 error='LVM volume group %s cannot be listed' % self.vg)
        try:
            report = json.loads(result.stdout)
            rows = [row for part in report['report'] for row in part.get('lv', [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError('The output of lvs for volume group %s is not the expected JSON report: %s.'
                               % (self.vg, exc))
        scan = Scan(rows)
        if scan.extent_size:
            self._extent_size = scan.extent_size
        if self.thin_pool is not None:
            pool = scan.by_name.get(self.thin_pool)
            if pool is None or pool.get('segtype') != 'thin-pool':
                raise StorageError('Thin pool %s does not exist in volume group %s.' % (self.thin_pool, self.vg))
        return scan

    def allocation_unit(self, volume=None):
        if self._extent_size is None:
            result = self.runner.run(['vgs', '--reportformat', 'json', '--units', 'b', '--nosuffix',
                                      '-o', 'vg_extent_size', self.vg],
                                     error='LVM volume group %s cannot be read' % self.vg)
            try:
                self._extent_size = int(json.loads(result.stdout)['report'][0]['vg'][0]['vg_extent_size'])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise StorageError('The output of vgs for volume group %s is not the expected JSON report: %s.'
                                   % (self.vg, exc))
        return self._extent_size

    def _details(self, row):
        active = _flag(row.get('lv_active'))
        return {
            'lv': self._lv(row['lv_name']),
            'path': '/dev/%s/%s' % (self.vg, row['lv_name']),
            'uuid': row.get('lv_uuid'),
            'active': active,
            'format': 'raw',
        }

    def _volume_record(self, row, tags, arrived=False):
        details = self._details(row)
        thin = row.get('segtype') == 'thin'
        details.update(type='thin' if thin else 'thick', thin_pool=row.get('pool_lv') or None)
        origin = None
        if tags.get('origin'):
            origin = {'volume': tags['origin'], 'snapshot': tags.get('origin_snapshot')}
        status = 'available'
        if tags.get('status') == 'creating':
            status = 'creating'
        elif tags.get('inbound') and 'snapshot' not in tags and not arrived:
            status = 'inbound'
        elif row['lv_name'] != volume_lv(tags['volume']) or 'snapshot' in tags:
            status = 'error'
            details['reason'] = ('LV %s carries the tag of volume %s but is not named %s.'
                                 % (details['lv'], tags['volume'], volume_lv(tags['volume'])))
        return Volume(name=tags['volume'], backend=self.name, status=status, size=int(row['lv_size']),
                      created=_created(tags), origin=origin, details=details)

    def _snapshot_record(self, row, tags, parent):
        details = self._details(row)
        status = 'available'
        origin_lv = volume_lv(tags['volume'])
        if not _is_cow(row):
            details.update(type='thin', usage_percent=_percent(row.get('data_percent')))
            size = int(row['lv_size'])
        else:
            details.update(type='cow', cow_size=int(row['lv_size']), usage_percent=_percent(row.get('snap_percent')))
            size = int(row['origin_size'] or 0) or None
        if tags.get('identity'):
            details['identity'] = tags['identity']
        thin_origin_ok = not _is_cow(row)  # a thin snapshot stands alone; a replica's is made from the one before
        if (row.get('origin') != origin_lv and not thin_origin_ok) \
                or row['lv_name'] != snapshot_lv(tags['volume'], tags['snapshot']):
            status = 'error'
            details['reason'] = ('LV %s carries the tags of snapshot %s of volume %s but is not LVM snapshot %s of %s.'
                                 % (details['lv'], tags['snapshot'], tags['volume'],
                                    snapshot_lv(tags['volume'], tags['snapshot']), self._lv(origin_lv)))
        elif _flag(row.get('lv_snapshot_invalid')) or row.get('lv_attr', '     ')[4:5] == 'I':
            status = 'error'
            details['reason'] = ('COW snapshot %s overflowed: its %s-byte exception store filled up, so it no '
                                 'longer holds the point in time; delete it.' % (details['lv'], row['lv_size']))
        elif _flag(row.get('lv_merging')):
            status = 'pending_delete'
            details['reason'] = 'LV %s is merging into its origin; LVM removes it when the merge ends.' % details['lv']
        elif tags.get('inbound') and not tags.get('inbound_done'):  # done: complete, the volume is replaced
            status = 'inbound'
        details['temporary'] = tags.get('temporary') == 'yes'
        details['holds'] = len(_holds(tags))
        return Snapshot(name=tags['snapshot'], volume=tags['volume'], backend=self.name, status=status, size=size,
                        created=_created(tags), parent=parent, details=details)

    def _ours(self, listing):
        for row, tags in listing.ours():
            if not self.confined or (row.get('pool_lv') == self.thin_pool if self.thin_pool
                                     else row.get('segtype') != 'thin'):
                yield row, tags

    def records(self, listing, name=None):
        volumes, snapshots = [], {}
        arrived = set(tags['volume'] for _row, tags in self._arrived_marks(listing, name))
        for row, tags in self._ours(listing):
            if name is not None and tags['volume'] != name:
                continue
            if 'snapshot' in tags:
                snapshots.setdefault(tags['volume'], []).append((tags.get('created', ''), tags['snapshot'],
                                                                 (row, tags)))
            else:
                volumes.append(self._volume_record(row, tags, tags['volume'] in arrived))
        listed = set(v.name for v in volumes)
        for row, tags in self._replacing(listing, name):
            if tags['volume'] not in listed:  # a run was cut between removing the volume and making it again
                listed.add(tags['volume'])
                volumes.append(Volume(name=tags['volume'], backend=self.name, status='inbound',
                                      size=int(row['lv_size']), created=None, origin=None,
                                      details={'lv': None, 'path': None, 'uuid': None, 'active': False,
                                               'format': 'raw', 'type': 'thin', 'thin_pool': row.get('pool_lv') or None,
                                               'reason': 'Volume %s is being made again from its replica snapshot %s; '
                                                         'the next receive, abort or delete finishes that.'
                                                         % (tags['volume'], tags['snapshot'])}))
        chains = dict((volume, in_chain_order(found, self._snapshot_record)) for volume, found in snapshots.items())
        for row, tags in self._ours(listing):
            arriving = tags.get('inbound')
            if 'snapshot' in tags or not arriving or not is_valid_name(arriving) \
                    or (name is not None and tags['volume'] != name):
                continue
            chain = chains.setdefault(tags['volume'], [])
            if not any(s.name == arriving for s in chain):
                chain.append(Snapshot(name=arriving, volume=tags['volume'], backend=self.name, status='inbound',
                                      size=int(row['lv_size']), created=None,
                                      parent=chain[-1].name if chain else None,
                                      details={'lv': None, 'path': None, 'uuid': None, 'active': False,
                                               'format': 'raw', 'temporary': False, 'holds': 0}))
        return sorted(volumes, key=lambda v: v.name), chains

    def _replacing(self, listing, name=None):
        """``(row, tags)`` of each volume's complete thin replica that is still to replace the volume.

        Only a snapshot with every mark a receive writes counts: named as its tags
        say, thin, ``inbound`` naming itself with its own identity, and
        ``inbound_done=yes``; and only when no replica (a snapshot with an identity)
        arrived after it. A receive finishes the one before it first, so there is at
        most one; a snapshot taken on the target while the transfer was cut may be
        newer, and then stays beside the replaced volume.
        """
        newest = {}
        for row, tags in self._ours(listing):
            if 'snapshot' in tags and tags.get('identity') and (name is None or tags['volume'] == name):
                key = (tags.get('created', ''), tags['snapshot'])
                if tags['volume'] not in newest or key > newest[tags['volume']][0]:
                    newest[tags['volume']] = (key, row, tags)
        return [(row, tags) for _key, row, tags in newest.values()
                if tags.get('inbound_done') == 'yes' and tags.get('inbound') == tags['snapshot']
                and tags.get('inbound_identity') == tags['identity']
                and row['lv_name'] == snapshot_lv(tags['volume'], tags['snapshot'])
                and row.get('segtype') == 'thin' and not _is_cow(row)]

    def _arrived_marks(self, listing, name=None):
        """``(row, tags)`` of volume LVs still marked inbound for a snapshot that has arrived.

        A receive into a new or a thick volume takes the snapshot, then drops the
        volume's marks; a run killed in between leaves the snapshot, with the
        identity the marks name, beside a volume that is complete.
        """
        arrived = set((tags['volume'], tags['snapshot'], tags.get('identity')) for _row, tags in self._ours(listing)
                      if 'snapshot' in tags and tags.get('identity') and not tags.get('inbound'))
        return [(row, tags) for row, tags in self._ours(listing)
                if 'snapshot' not in tags and tags.get('inbound') and (name is None or tags['volume'] == name)
                and (tags['volume'], tags['inbound'], tags.get('inbound_identity')) in arrived]

    def _written_since_base(self, listing, volume, tags):
        """Bytes written to ``volume``'s LV since the base its replica ``tags`` was made from.

        None when the LV is not our volume's, or the base cannot be compared with it.
        Only a volume with 0 is replaced by the replica (``settle``); any other is
        kept, the replica stays a snapshot beside it, and the next replication refuses
        the written target as it refuses any other.
        """
        volumes, chains = self.records(listing, volume)
        head = listing.by_name.get(volume_lv(volume))
        if not volumes or head is None or volumes[0].details.get('lv') != self._lv(head['lv_name']) \
                or volumes[0].status != 'available':
            return None
        base = next((s for s in chains.get(volume, []) if s.details.get('identity') == tags.get('inbound_base')
                     and s.status == 'available'), None)
        ranges = self.changed_ranges(base, volumes[0]) if base is not None else None
        return sum(length for _offset, length in ranges) if ranges is not None else None

    def plan_settings(self, record):
        if record.details.get('active') is False and record.details.get('lv'):
            names = dict(volume=record.volume, snapshot=record.name) if isinstance(record, Snapshot) else \
                dict(volume=record.name)
            return Settings([Action(Verb.ACTIVATE, 'activate LV %s so that %s exists'
                                    % (record.details['lv'], record.details['path']), **names)],
                            record.replace(details=dict(record.details, active=True)))
        return Settings((), record)

    def check_rewritable(self, volume, verb=None):
        if verb != 'extend_volume' or volume.details.get('type') != 'thick':
            return
        lv = volume_lv(volume.name)
        cow = sorted(row['lv_name'] for row in self.listing(fresh=False).rows if row.get('origin') == lv and _is_cow(row))
        if cow:
            raise StorageError('Volume %s has COW snapshots (%s); LVM grows a thick origin only while it is '
                               'inactive, so delete the snapshots first.' % (volume.name, ', '.join(cow)))

    # -- changes ------------------------------------------------------------------------

    def _tags(self, **tags):
        argv = []
        for key, value in sorted(tags.items()):
            if value is not None:
                argv += ['--addtag', '%s%s=%s' % (TAG, key, value)]
        return argv

    @staticmethod
    def _now():
        return datetime.datetime.now(tz=datetime.timezone.utc).strftime(TIME_FORMAT)

    def _refuse_foreign(self, scan, lv):
        if lv in scan.by_name:
            raise StorageError('LV %s already exists and is not managed by stratum.storage; it is left untouched.'
                               % self._lv(lv))

    def _create(self, name, size, extra_tags):
        lv = volume_lv(name)
        tags = self._tags(volume=name, created=self._now(), **extra_tags)
        if self.thin_pool:
            argv = ['lvcreate', '--yes', '-V', '%db' % size, '-T', self._lv(self.thin_pool), '-n', lv]
        else:
            argv = ['lvcreate', '--yes', '-L', '%db' % size, '-n', lv]
        self.change(argv + tags + ([] if self.thin_pool else [self.vg]),
                    error='Creating LV %s failed' % self._lv(lv))
        return lv

    def create_volume(self, name, size, fmt):
        self._refuse_foreign(self.listing(fresh=False), volume_lv(name))
        self._create(name, size, {})

    def clone_volume(self, name, source, snapshot, size, fmt):
        scan = self.listing(fresh=False)
        lv = volume_lv(name)
        self._refuse_foreign(scan, lv)
        source_lv = snapshot_lv(source, snapshot) if snapshot else volume_lv(source)
        row = scan.by_name[source_lv]
        origin_tags = dict(origin=source, origin_snapshot=snapshot)
        if row.get('segtype') == 'thin':
            # A thin snapshot that is writable and activated is a complete clone.
            self.change(['lvcreate', '--yes', '-s', '-kn', '-n', lv]
                        + self._tags(volume=name, created=self._now(), **origin_tags) + [self._lv(source_lv)],
                        error='Cloning LV %s into %s failed' % (self._lv(source_lv), self._lv(lv)))
            if size > int(row['lv_size']):
                self.extend_volume(name, size)
            return
        self._create(name, size, dict(origin_tags, status='creating'))
        self.change(['dd', 'if=/dev/%s/%s' % (self.vg, source_lv), 'of=/dev/%s/%s' % (self.vg, lv), 'bs=1M',
                     'count=%d' % int(row['origin_size'] if _is_cow(row) else row['lv_size']),
                     'iflag=count_bytes', 'conv=fsync', 'status=none'],
                    error='Copying %s into %s failed' % (self._lv(source_lv), self._lv(lv)))
        self.change(['lvchange', '--deltag', '%sstatus=creating' % TAG, self._lv(lv)],
                    error='Marking LV %s complete failed' % self._lv(lv))

    def extend_volume(self, name, size):
        self.change(['lvextend', '--yes', '-L', '%db' % size, self._lv(volume_lv(name))],
                    error='Growing LV %s failed' % self._lv(volume_lv(name)))

    def delete_volume(self, name):
        scan = self.listing(fresh=False)
        lv = volume_lv(name)
        ours = [row['lv_name'] for row, tags in self._ours(scan) if tags['volume'] == name and 'snapshot' in tags]
        foreign = sorted(row['lv_name'] for row in scan.rows
                         if row.get('origin') == lv and row['lv_name'] not in ours and _is_cow(row))
        if foreign:
            raise StorageError('LV %s has COW snapshots not managed by stratum.storage (%s); remove them first.'
                               % (self._lv(lv), ', '.join(foreign)))
        if ours:
            self.change(['lvremove', '--yes'] + [self._lv(snap) for snap in sorted(ours)],
                        error='Removing the snapshots of volume %s failed' % name)
        self.change(['lvremove', '--yes', self._lv(lv)], error='Removing LV %s failed' % self._lv(lv))

    def create_snapshot(self, volume, name, temporary=False):
        scan = self.listing(fresh=False)
        lv = snapshot_lv(volume, name)
        self._refuse_foreign(scan, lv)
        origin = scan.by_name[volume_lv(volume)]
        argv = ['lvcreate', '--yes', '-s', '-n', lv]
        if origin.get('segtype') == 'thin':
            argv += ['-kn']  # thin snapshots skip activation unless told otherwise
        else:
            argv += ['-L', '%db' % self._cow_size(int(origin['lv_size']), temporary)]
        self.change(argv + self._tags(volume=volume, snapshot=name, created=self._now(),
                                      temporary='yes' if temporary else None)
                    + [self._lv(volume_lv(volume))],
                    error='Creating snapshot LV %s failed' % self._lv(lv))

    def _cow_size(self, origin_size, temporary=False):
        """COW bytes for a snapshot of a thick origin: ``lvm.snapshot_size``, else room for a full rewrite.

        A temporary snapshot lives for a backup run, so without ``lvm.snapshot_size``
        it gets ``TEMPORARY_COW_PERCENT`` of the origin instead.
        """
        extent = self.allocation_unit()
        wanted = self.snapshot_request(origin_size)
        if wanted is None and temporary:
            wanted = -(-origin_size * TEMPORARY_COW_PERCENT // 100)
        if wanted is None or wanted >= origin_size:
            # Ask for more than the origin: lvcreate reduces it to the largest usable size,
            # which holds a full rewrite of the origin plus the exception store's own metadata.
            wanted = origin_size + origin_size // 64 + 2 * extent
        return round_up(wanted, extent)

    def delete_snapshot(self, volume, name):
        lv = self._lv(snapshot_lv(volume, name))
        row = self.listing(fresh=False).by_name.get(snapshot_lv(volume, name))
        held = _holds(parse_tags(row.get('lv_tags'))) if row else set()
        if held:
            raise StorageError('Snapshot %s of volume %s is held by %s (the last snapshot replicated there); delete '
                               'that replica first.' % (name, volume, ', '.join(sorted(held))))
        self.change(['lvremove', '--yes', lv], error='Removing snapshot LV %s failed' % lv)

    def activate(self, volume, snapshot=None):
        lv = self._lv(snapshot_lv(volume, snapshot) if snapshot else volume_lv(volume))
        self.change(['lvchange', '-ay', '-K', lv], error='Activating LV %s failed' % lv)

    # -- the data mover ------------------------------------------------------------------

    def location(self):
        return self.vg

    def snapshot_identity(self, snapshot):
        return snapshot.details.get('identity') or snapshot.details.get('uuid')

    @contextmanager
    def open_snapshot(self, snapshot):
        from ansible_collections.stratum.storage.plugins.module_utils._mover import BlockReader

        with BlockReader(snapshot.details['path'], snapshot.size, 'Snapshot LV %s' % snapshot.details['lv']) as reader:
            yield reader

    def changed_ranges(self, base, snapshot):
        """``thin_delta`` between two thin snapshots of one pool, read from a reserved metadata snapshot."""
        if base.details.get('type') != 'thin' or snapshot.details.get('type') != 'thin':
            return None
        result = self.runner.run(['lvs', '--reportformat', 'json', '-o', 'lv_name,lv_uuid,thin_id,pool_lv',
                                  base.details['lv'], snapshot.details['lv']],
                                 error='LVM cannot list %s and %s' % (base.details['lv'], snapshot.details['lv']))
        try:
            rows = [row for part in json.loads(result.stdout)['report'] for row in part.get('lv', [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError('The output of lvs is not the expected JSON report: %s.' % exc)
        found = dict((row.get('lv_uuid'), row) for row in rows)
        pair = [found.get(base.details.get('uuid')), found.get(snapshot.details.get('uuid'))]
        if None in pair or pair[0].get('pool_lv') != pair[1].get('pool_lv') or not pair[0].get('pool_lv'):
            return None
        pool = '%s-%s' % (self.vg.replace('-', '--'), pair[0]['pool_lv'].replace('-', '--'))
        message = ['dmsetup', 'message', pool + '-tpool', '0']
        # one metadata snapshot per pool: runs on this host take the pool's lock for it, so one
        # found reserved under the lock was left by a run that was killed, and is released
        with host_locks('lvm-pool:%s' % self.vg, [pair[0]['pool_lv']]):
            if self.runner.run(message + ['reserve_metadata_snap'], check=False).rc != 0:
                self.runner.run(message + ['release_metadata_snap'], check=False)
                self.runner.run(message + ['reserve_metadata_snap'], error='Reserving a metadata snapshot of thin '
                                'pool %s/%s failed' % (self.vg, pair[0]['pool_lv']))
            try:
                delta = self.runner.run(['thin_delta', '-m', '--snap1', pair[0]['thin_id'], '--snap2',
                                         pair[1]['thin_id'], '/dev/mapper/%s_tmeta' % pool],
                                        error='thin_delta between %s and %s failed'
                                        % (base.details['lv'], snapshot.details['lv']))
            finally:
                self.runner.run(message + ['release_metadata_snap'], check=False)
        return parse_thin_delta(delta.stdout)

    # -- replication -------------------------------------------------------------------------

    def holds(self, volume, snapshots):
        """The hold names on each of ``snapshots`` (names) of ``volume``, from their LV tags."""
        scan = self.listing(fresh=False)
        found = {}
        for name in snapshots:
            row = scan.by_name.get(snapshot_lv(volume, name))
            found[name] = _holds(parse_tags(row.get('lv_tags'))) if row else set()
        return found

    def _hold_tag(self, tag):
        return '%shold_%s=%s' % (TAG, hashlib.sha256(tag.encode('utf-8')).hexdigest()[:12], tag)

    def hold(self, volume, snapshot, tag):
        lv = self._lv(snapshot_lv(volume, snapshot))
        self.change(['lvchange', '--addtag', self._hold_tag(tag), lv], error='Holding snapshot LV %s failed' % lv)

    def release(self, volume, snapshot, tag):
        lv = self._lv(snapshot_lv(volume, snapshot))
        self.change(['lvchange', '--deltag', self._hold_tag(tag), lv],
                    error='Releasing the hold on snapshot LV %s failed' % lv)

    def replica_state(self, volume):
        """The replica arriving in ``volume`` (``inbound``) and the bytes written to it since its newest snapshot."""
        scan = self.listing()
        volumes, chains = self.records(scan, volume)  # one listing for the records and the marks
        current, snapshots = (volumes[0] if volumes else None), chains.get(volume, [])
        inbound = None
        finished = self._arrived_marks(scan, volume)
        for row, tags in self._ours(scan):
            if tags['volume'] == volume and tags.get('inbound') and not tags.get('inbound_done') \
                    and (row, tags) not in finished:
                inbound = {'snapshot': tags['inbound'], 'identity': tags.get('inbound_identity'),
                           'base': None if tags.get('inbound_base') in (None, '-') else tags['inbound_base']}
        written = None
        arrived = [s for s in snapshots if s.status == 'available']
        replacing = self._replacing(scan, volume)
        head = scan.by_name.get(volume_lv(volume))
        if replacing and (head is None or head.get('origin') != replacing[0][0]['lv_name']):
            # the volume is still to be made from the newest replica (``settle``): it counts as that replica
            # when it has no LV, or when its LV is ours and unchanged since the replica's base
            written = 0 if head is None else self._written_since_base(scan, volume, replacing[0][1])
        elif current is not None and arrived:
            newest = arrived[-1]
            if newest.details.get('type') == 'thin' and current.details.get('type') == 'thin':
                ranges = self.changed_ranges(newest, current)
                written = sum(length for _offset, length in ranges) if ranges is not None else None
            elif newest.details.get('type') == 'cow':
                usage = newest.details.get('usage_percent') or 0
                written = int(newest.details['cow_size'] * usage / 100) or (1 if usage else 0)
        left = replacing[0][1]['snapshot'] if replacing else finished[0][1]['inbound'] if finished else None
        return {'token': None, 'written': written, 'inbound': inbound, 'replacing': left}

    @contextmanager
    def receive_into(self, volume, snapshot, identity, base_identity, size, created, resume, check):
        """Yield the LV that the block stream of ``snapshot`` goes to; take the snapshot when it is complete.

        A new volume is created and written, then snapshotted. On a thin pool an
        existing volume's replica is a thin snapshot of the previous replica (the
        base), written with the changes, which then replaces the volume; a thick
        volume is written in place (its base's COW area keeps the previous
        point). The LV being written carries the ``stratum_inbound`` tags.
        ``check(current, snapshots, state)`` runs first; the preparation and the
        completion run under the volume's lock, the data is written outside it.
        """
        from ansible_collections.stratum.storage.plugins.module_utils._mover import BlockWriter, FullnessGuard

        guard = self.thin_pool is not None and self.pool_limit is not None
        with self.lock([volume]):
            current, snapshots = self.read_volume(volume)
            if self.settle(volume, fresh=False):  # what a receive killed after its data was complete left
                current, snapshots = self.read_volume(volume)
            check(current, snapshots, self.replica_state(volume) if current is not None else {})
            target, fresh = self._receive_target(volume, snapshot, identity, base_identity, size, resume,
                                                 current, snapshots)
            if guard:  # the pool is active now (with the LV written to), so it tells how full it is
                self._check_pool(0)
        with BlockWriter('/dev/%s/%s' % (self.vg, target), size, 'LV %s' % self._lv(target),
                         skip_zeros=fresh) as writer:
            yield FullnessGuard(writer, self._check_pool, POOL_CHECK_BYTES) if guard else writer
        with self.lock([volume]):
            self._receive_done(volume, snapshot, identity, base_identity, target)

    def _check_pool(self, written):
        """Raise when the thin pool's data or metadata is ``pool_limit`` percent full or more."""
        pool = '%s/%s' % (self.vg, self.thin_pool)
        result = self.runner.run(['lvs', '--reportformat', 'json', '-o', 'data_percent,metadata_percent', pool],
                                 error='Reading how full thin pool %s is failed' % pool)
        try:
            row = json.loads(result.stdout)['report'][0]['lv'][0]
            values = [_percent(row.get('data_percent')), _percent(row.get('metadata_percent'))]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            values = [None]
        if None in values:
            raise StorageError('lvs printed no data and metadata use for thin pool %s: %r.' % (pool, result.stdout[:200]))
        part, full = max(zip(('data', 'metadata'), values), key=lambda item: item[1])
        if full >= self.pool_limit:
            raise StorageError('Thin pool %s is %.1f%% full (%s), at or above the receiver\'s limit of %s%%; %s'
                               % (pool, full, part, self.pool_limit,
                                  'nothing was written, and the next run tries again once the pool has room.'
                                  if not written else
                                  'the transfer stopped after writing %d bytes and resumes on the next run once the '
                                  'pool has room.' % written))

    def _receive_target(self, volume, snapshot, identity, base_identity, size, resume, current, snapshots):
        """Make (or find again) and mark the LV the stream goes to; return ``(its name, reads as zeros)``."""
        marks = dict(inbound=snapshot, inbound_identity=identity, inbound_base=base_identity or '-')
        working = snapshot_lv(volume, snapshot)
        arrived = [s for s in snapshots if s.status == 'available']
        if current is None or (current.status == 'inbound' and not arrived):  # a volume this replica creates
            if current is None:
                self._create(volume, size, marks)
            target, fresh = volume_lv(volume), bool(self.thin_pool)
        elif current.details.get('type') == 'thin':
            if self.listing(fresh=False).by_name.get(working) is None:
                base = next((s for s in snapshots if self.snapshot_identity(s) == base_identity
                             and s.status == 'available'), None)
                if base is None:
                    raise StorageError('Volume %s has no snapshot with identity %s to start from.'
                                       % (volume, base_identity))
                self.change(['lvcreate', '--yes', '-s', '-kn', '-n', working]
                            + self._tags(volume=volume, snapshot=snapshot, created=self._now(), identity=identity,
                                         **marks) + [base.details['lv']],
                            error='Creating LV %s for the replica failed' % self._lv(working))
            target, fresh = working, False
        else:
            if not resume:
                self.change(['lvchange'] + self._tags(**marks) + [self._lv(volume_lv(volume))],
                            error='Marking LV %s inbound failed' % self._lv(volume_lv(volume)))
            target, fresh = volume_lv(volume), False
        row = self.listing().by_name[target]
        if not _flag(row.get('lv_active')):
            self.change(['lvchange', '-ay', '-K', self._lv(target)], error='Activating LV %s failed' % self._lv(target))
        if size > int(row['lv_size']):
            self.change(['lvextend', '--yes', '-L', '%db' % size, self._lv(target)],
                        error='Growing LV %s failed' % self._lv(target))
        return target, fresh

    def _receive_done(self, volume, snapshot, identity, base_identity, target):
        """Turn the written LV into the replica snapshot (and the volume), and drop the marks."""
        marks = dict(inbound=snapshot, inbound_identity=identity, inbound_base=base_identity or '-')
        working = snapshot_lv(volume, snapshot)
        unmark = [a for key, value in sorted(marks.items()) for a in ('--deltag', '%s%s=%s' % (TAG, key, value))]
        if target == working:
            # the data is complete: from here on the volume is replaced by the replica, by this run or,
            # if it is killed on the way, by the next request that changes the volume (``settle``)
            self.change(['lvchange'] + self._tags(inbound_done='yes') + [self._lv(working)],
                        error='Marking LV %s complete failed' % self._lv(working))
            self.settle(volume)
            return
        origin = self.listing().by_name[volume_lv(volume)]
        argv = ['lvcreate', '--yes', '-s', '-n', working]
        argv += ['-kn'] if origin.get('segtype') == 'thin' else ['-L', '%db' % self._cow_size(int(origin['lv_size']))]
        self.change(argv + self._tags(volume=volume, snapshot=snapshot, created=self._now(), identity=identity)
                    + [self._lv(volume_lv(volume))], error='Creating snapshot LV %s failed' % self._lv(working))
        self.change(['lvchange'] + unmark + [self._lv(volume_lv(volume))],
                    error='Marking LV %s complete failed' % self._lv(volume_lv(volume)))

    def settle(self, volume, fresh=True, apply=True):
        """Finish what a receive into ``volume`` left when it was killed after its data was complete.

        A thin replica still to replace the volume: the volume becomes a thin
        snapshot of it (the old volume LV is removed only when it is ours and
        unchanged since the replica's base), and last the replica's marks are
        dropped. A listing in between shows the replica available and the volume as
        it is, or ``inbound`` while it has no LV. A new or thick volume whose
        snapshot was taken but whose marks were not dropped: the marks go. Returns
        what it did, or None. ``fresh=False`` uses the listing already read under
        the lock; ``apply=False`` (check mode) only says what it would do.
        """
        scan = self.listing(fresh=fresh)
        for row, tags in self._replacing(scan, volume):
            done = 'finish what the receive of replica snapshot %s left on volume %s' % (tags['snapshot'], volume)
            if not apply:
                return done
            working, head = row['lv_name'], scan.by_name.get(volume_lv(volume))
            if head is None or head.get('origin') != working:
                if head is None or self._written_since_base(scan, volume, tags) == 0:
                    if head is not None:
                        self.change(['lvremove', '--yes', self._lv(volume_lv(volume))],
                                    error='Replacing LV %s failed' % self._lv(volume_lv(volume)))
                    self.change(['lvcreate', '--yes', '-s', '-kn', '-n', volume_lv(volume)]
                                + self._tags(volume=volume, created=self._now()) + [self._lv(working)],
                                error='Making LV %s from the replica failed' % self._lv(volume_lv(volume)))
            unmark = [a for key in ('inbound', 'inbound_identity', 'inbound_base', 'inbound_done') if key in tags
                      for a in ('--deltag', '%s%s=%s' % (TAG, key, tags[key]))]
            self.change(['lvchange'] + unmark + [self._lv(working)],
                        error='Marking LV %s complete failed' % self._lv(working))
            return done
        for row, tags in self._arrived_marks(scan, volume):
            if apply:
                unmark = [a for key in ('inbound', 'inbound_identity', 'inbound_base') if key in tags
                          for a in ('--deltag', '%s%s=%s' % (TAG, key, tags[key]))]
                self.change(['lvchange'] + unmark + [self._lv(row['lv_name'])],
                            error='Marking LV %s complete failed' % self._lv(row['lv_name']))
            return 'finish what the receive of replica snapshot %s left on volume %s' % (tags['inbound'], volume)
        return None

    def abort_receive(self, volume):
        """Drop what a cut replica left: the LV it was writing (a new volume goes), or the marks of an old one.

        What a receive killed after its data was complete left is finished instead (``settle``).
        """
        scan = self.listing()
        if self.settle(volume, fresh=False):
            scan = self.listing()
        for row, tags in list(self._ours(scan)):
            if tags['volume'] != volume or not tags.get('inbound'):
                continue
            arrived = [s for s in self.read_volume(volume)[1] if s.status == 'available']
            if ('snapshot' in tags and tags.get('inbound_done') != 'yes') or ('snapshot' not in tags and not arrived):
                if 'snapshot' not in tags:
                    self.delete_volume(volume)
                    return
                self.change(['lvremove', '--yes', self._lv(row['lv_name'])],
                            error='Removing LV %s failed' % self._lv(row['lv_name']))
            else:
                # a volume that holds replicas already, or a snapshot whose data is complete, stays
                unmark = [a for key in ('inbound', 'inbound_identity', 'inbound_base', 'inbound_done') if key in tags
                          for a in ('--deltag', '%s%s=%s' % (TAG, key, tags[key]))]
                self.change(['lvchange'] + unmark + [self._lv(row['lv_name'])],
                            error='Clearing the marks of LV %s failed' % self._lv(row['lv_name']))

    def restore_volume(self, name, image, size, fmt):
        from ansible_collections.stratum.storage.plugins.module_utils._mover import restore_into_device

        self._refuse_foreign(self.listing(fresh=False), volume_lv(name))
        lv = self._create(name, size, {'status': 'creating'})
        # a thin LV reads zeros where nothing was written; a thick one may hold old data of the disk
        restore_into_device(self.runner, image, '/dev/%s/%s' % (self.vg, lv), 'LV %s' % self._lv(lv), size,
                            zeroed=bool(self.thin_pool))
        self.change(['lvchange', '--deltag', '%sstatus=creating' % TAG, self._lv(lv)],
                    error='Marking LV %s complete failed' % self._lv(lv))


def parse_thin_delta(text):
    """The byte ranges that ``thin_delta`` reports as different, only right or only left (unmapped now)."""
    match = BLOCK_SIZE_RE.search(text)
    if not match:
        raise StorageError('thin_delta printed no data_block_size: %r.' % text[:200])
    unit = int(match.group(1)) * 512
    return [(int(begin) * unit, int(length) * unit) for _kind, begin, length in THIN_DELTA_RE.findall(text)]


def _holds(tags):
    """The hold names among our tags of one LV."""
    return set(value for key, value in tags.items() if key.startswith('hold_'))
