# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ZFS backend: zvols under one parent dataset, their snapshots and clones.

Volume ``V`` is the zvol ``<parent>/V``; its snapshot ``S`` is ``<parent>/V@S``.
One ``zfs list -H -p`` call lists every zvol directly under ``parent`` and every
snapshot of them, with all the columns the records need; a read of one volume
lists only that zvol and its snapshots. Our own metadata is in
user properties named ``stratum:*``; ``stratum:status=inbound`` marks data that
is still arriving.

A replica (``_replica``) arrives with ``zfs receive -s -u``. While it does, the
target zvol carries ``stratum:status=receiving:S`` (an incremental into an
existing zvol, which stays readable) or ``inbound:S`` (a zvol that the replica
creates), and snapshot ``S`` lists as ``inbound`` until it has arrived and its
guid is checked. A receive that was cut keeps its ``receive_resume_token``.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import time
from contextlib import contextmanager

from ansible_collections.stratum.storage.plugins.module_utils._backend import (
    Action, ListingBackend, Settings, Verb, in_chain_order)
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._files import host_lock_turns, host_locks
from ansible_collections.stratum.storage.plugins.module_utils._names import is_valid_name
from ansible_collections.stratum.storage.plugins.module_utils._runner import command_error
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume, iso_utc
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size

STATUS_PROPERTY = 'stratum:status'
#: ``stratum:status`` values of a zvol receiving snapshot S with guid G, ``receiving:S:G`` into an
#: existing zvol or ``inbound:S:G`` creating it (0.2.0 wrote ``receiving:S`` / ``inbound:S``)
RECEIVING_PREFIX = 'receiving:'
INBOUND_PREFIX = 'inbound:'
TEMPORARY_PROPERTY = 'stratum:temporary'
#: seconds to wait for udev to make a zvol's device node
DEVICE_TIMEOUT = 120
CLONE_SNAPSHOT_PREFIX = 'clone-'
COLUMNS = ('name', 'type', 'guid', 'volsize', 'volblocksize', 'used', 'referenced', 'origin', 'createtxg',
           'creation', 'defer_destroy', 'userrefs', 'clones', 'receive_resume_token', 'refreservation',
           STATUS_PROPERTY, TEMPORARY_PROPERTY)
#: properties that ZFS fixes when a zvol is created
CREATE_ONLY = ('volblocksize', 'encryption', 'keyformat', 'pbkdf2iters')
#: properties whose parsable value is bytes; a desired value such as 16K is compared as bytes
SIZE_PROPERTIES = ('volblocksize', 'refreservation', 'reservation', 'quota', 'refquota', 'recordsize',
                   'special_small_blocks')
#: properties the module manages itself
OWN_PROPERTIES = ('volsize', 'origin', STATUS_PROPERTY, TEMPORARY_PROPERTY)
DEFAULT_VOLBLOCKSIZE = 16384
DATASET_MAX = 255
DATASET_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9][A-Za-z0-9_.:-]*)*')
PROPERTY_RE = re.compile(r'[a-z][a-z0-9_.:-]*')
#: the BEGIN record of a send stream (dmu_replay_record_t: type, payload length, drr_begin)
BEGIN = struct.Struct('<II QQQ II QQ 256s')
STREAM_MAGIC = 0x2F5BACBAC
SUBSTREAM, ZVOL_TYPE, CLONE_FLAG = 1, 3, 1
RESUME_FIELD_RE = re.compile(r'^\s*(toname|toguid) = (\S+)\s*$', re.M)


def property_value(name, value):
    """Return a desired property value in the form ``zfs list -p`` prints it."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value or any(c in value for c in '\t\n\r\0'):
        raise InvalidInputError('ZFS property %s has value %r; give a string or a number.' % (name, value))
    if name in SIZE_PROPERTIES and value not in ('none', 'auto'):
        return str(parse_size(value, 'ZFS property %s' % name))
    return value


class ZfsBackend(ListingBackend):
    name = 'zfs'
    scoped_reads = True
    deferred_delete = True  # zfs destroy -d: ZFS removes the snapshot when its last clone or hold goes

    def __init__(self, runner, config):
        super().__init__(runner, config)
        self.parent = config.get('parent')
        self.sparse = bool(config.get('sparse'))
        self.properties = {}
        if not isinstance(self.parent, str) or not DATASET_RE.fullmatch(self.parent):
            raise InvalidInputError('zfs.parent %r is not a dataset name such as tank/volumes.' % (self.parent,))
        for name, value in sorted((config.get('properties') or {}).items()):
            if not PROPERTY_RE.fullmatch(name):
                raise InvalidInputError('ZFS property name %r is invalid.' % (name,))
            if name in OWN_PROPERTIES:
                raise InvalidInputError('ZFS property %s is managed by the module itself (use size for volsize); '
                                        'remove it from zfs.properties.' % name)
            self.properties[name] = property_value(name, value)

    # -- configuration ------------------------------------------------------------------

    def _dataset(self, volume, snapshot=None):
        name = '%s/%s' % (self.parent, volume)
        return '%s@%s' % (name, snapshot) if snapshot else name

    def _check_length(self, dataset, what):
        if len(dataset) > DATASET_MAX:
            raise InvalidInputError('%s is too long for ZFS: %s would be %d characters, more than %d.'
                                    % (what, dataset, len(dataset), DATASET_MAX))

    def validate_volume_name(self, name):
        self._check_length(self._dataset(name), 'Volume name %r' % name)

    def validate_snapshot_name(self, name, volume=None):
        self._check_length(self._dataset(volume or '', name), 'Snapshot name %r' % name)

    def lock(self, volumes):
        """Host-local locks on ``volumes``: only this host changes its pools."""
        return host_locks('zfs:%s' % self.parent, volumes)

    def lock_turns(self, volumes):
        return host_lock_turns('zfs:%s' % self.parent, volumes)

    # -- reading ------------------------------------------------------------------------

    def _columns(self):
        return list(COLUMNS) + sorted(p for p in self.properties if p not in COLUMNS)

    def list_all(self, volume=None):
        """Run the one listing command; return rows as dicts keyed by column.

        With ``volume``, only that zvol and its snapshots are listed, so a read costs
        the same however many volumes the parent holds. ZFS refuses to list a dataset
        that does not exist: then the parent is read instead (a missing parent is an
        error, as in the listing of everything) and nothing is returned.
        """
        columns = self._columns()
        target = self.parent if volume is None else self._dataset(volume)
        if len(target) > DATASET_MAX:  # a name no zvol can have (the info modules do not refuse it)
            return self._absent()
        result = self.runner.run(['zfs', 'list', '-H', '-p', '-t', 'volume,snapshot', '-r',
                                  '-d', '2' if volume is None else '1', '-o', ','.join(columns), target],
                                 check=volume is None, error='ZFS dataset %s cannot be listed' % target)
        if result.rc == 0:
            return parse_list(result.stdout, columns)
        if "cannot open '%s': dataset does not exist" % target not in result.stderr:
            raise command_error(result, 'ZFS dataset %s cannot be listed' % target)
        return self._absent()

    def _absent(self):
        """The listing of a zvol that is not there (no rows), once the parent is: a missing parent is an error,
        as in the listing of everything."""
        self.runner.run(['zfs', 'list', '-H', '-p', '-o', 'name', self.parent],
                        error='ZFS dataset %s cannot be listed' % self.parent)
        return []

    def _split(self, dataset):
        """Return ``(volume, snapshot or None)`` of a dataset under ``parent``, or None."""
        prefix = self.parent + '/'
        if not dataset.startswith(prefix):
            return None
        rest = dataset[len(prefix):]
        volume, _sep, snapshot = rest.partition('@')
        if '/' in volume or not volume:
            return None
        return volume, snapshot or None

    def _origin(self, value):
        if value in (None, '-'):
            return None
        split = self._split(value)
        if split is None:
            return {'volume': None, 'snapshot': None, 'dataset': value}
        return {'volume': split[0], 'snapshot': split[1]}

    def _volume_record(self, volume, row, mark):
        status = 'available'
        if mark == 'inbound' or mark.startswith(INBOUND_PREFIX) or (
                row['receive_resume_token'] not in ('-', '') and not mark.startswith(RECEIVING_PREFIX)):
            status = 'inbound'
        elif mark == 'creating':
            status = 'creating'
        details = {
            'dataset': row['name'],
            'path': '/dev/zvol/%s' % row['name'],
            'guid': row['guid'],
            'volblocksize': _int(row['volblocksize']),
            'used': _int(row['used']),
            'referenced': _int(row['referenced']),
            'sparse': row['refreservation'] in ('0', 'none', '-'),
            'format': 'raw',
            'properties': dict((p, row[p]) for p in sorted(self.properties)),
        }
        return Volume(name=volume, backend=self.name, status=status, size=_int(row['volsize']),
                      created=iso_utc(_int(row['creation'])), origin=self._origin(row['origin']), details=details)

    def _snapshot_record(self, volume, snapshot, row, mark, parent):
        status = 'available'
        receive = _receive_mark(mark)
        if row['defer_destroy'] == 'on':
            status = 'pending_delete'
        elif mark == 'inbound' or mark.startswith(INBOUND_PREFIX) or (receive is not None and receive[1] == snapshot):
            status = 'inbound'
        clones = [c for c in row['clones'].split(',') if c and c != '-']
        details = {
            'dataset': row['name'],
            'guid': row['guid'],
            'createtxg': _int(row['createtxg']),
            'used': _int(row['used']),
            'referenced': _int(row['referenced']),
            'clones': clones,
            'holds': _int(row['userrefs']) or 0,
            'temporary': row.get(TEMPORARY_PROPERTY) == 'yes',
        }
        return Snapshot(name=snapshot, volume=volume, backend=self.name, status=status, size=_int(row['volsize']),
                        created=iso_utc(_int(row['creation'])), parent=parent, details=details)

    def records(self, listing, name=None):
        volume_rows, snapshot_rows = {}, {}
        for row in listing:
            split = self._split(row['name'])
            if split is None or (name is not None and split[0] != name):
                continue
            if row['type'] == 'volume' and split[1] is None:
                volume_rows[split[0]] = row
            elif row['type'] == 'snapshot' and split[1] is not None:
                snapshot_rows.setdefault(split[0], {})[split[1]] = row
        volumes, chains = [], {}
        for volume_name in sorted(volume_rows):
            row, rows = volume_rows[volume_name], snapshot_rows.get(volume_name, {})
            mark = row[STATUS_PROPERTY]
            # a receive killed after its snapshot arrived (complete: ZFS makes it last) left only its mark;
            # the zvol and its snapshots are listed as they are, and ``settle`` drops the mark
            arrived = _arrived(row, rows) is not None
            volume = self._volume_record(volume_name, row, '' if arrived else mark)
            found = [(_int(r['createtxg']) or 0, snapshot,
                      (volume_name, snapshot, r, '' if arrived and r[STATUS_PROPERTY] == mark else r[STATUS_PROPERTY]))
                     for snapshot, r in rows.items()]
            chain = in_chain_order(found, self._snapshot_record)
            arriving = None if arrived else self._arriving(volume, mark, chain)
            if arriving is not None:
                chain.append(arriving)
            volumes.append(volume)
            if chain:
                chains[volume_name] = chain
        return volumes, chains

    def _arriving(self, volume, mark, chain):
        """The snapshot a replica is bringing to ``volume`` before ZFS has made it: listed ``inbound``."""
        receive = _receive_mark(mark)
        if receive is not None and not any(s.name == receive[1] for s in chain):
            return Snapshot(name=receive[1], volume=volume.name, backend=self.name, status='inbound',
                            size=volume.size, created=None, parent=chain[-1].name if chain else None,
                            details={'dataset': self._dataset(volume.name, receive[1]), 'guid': None,
                                     'createtxg': None, 'used': None, 'referenced': None, 'clones': [],
                                     'holds': 0, 'temporary': False})
        return None

    def allocation_unit(self, volume=None):
        if volume is not None and volume.details.get('volblocksize'):
            return volume.details['volblocksize']
        return int(self.properties.get('volblocksize', DEFAULT_VOLBLOCKSIZE))

    def plan_settings(self, record):
        if isinstance(record, Snapshot):
            return Settings((), record)
        have = record.details.get('properties', {})
        changes = {}
        for name, value in sorted(self.properties.items()):
            if have.get(name) == value:
                continue
            if name in CREATE_ONLY:
                raise InvalidInputError('Volume %s has %s=%s, and ZFS sets %s only when a volume is created, so it '
                                        'cannot become %s.' % (record.name, name, have.get(name), name, value))
            changes[name] = value
        if not changes:
            return Settings((), record)
        text = ', '.join('%s=%s' % item for item in sorted(changes.items()))
        predicted = record.replace(details=dict(record.details, properties=dict(have, **changes)))
        return Settings([Action(Verb.SET_PROPERTIES, 'set %s on %s' % (text, record.details['dataset']),
                                rewrites=[record], name=record.name, properties=changes)], predicted)

    def predict_deleted_snapshot(self, snapshot):
        if snapshot.details.get('clones') or snapshot.details.get('holds'):
            return snapshot.replace(status='pending_delete')
        return None

    # -- changes ------------------------------------------------------------------------

    def _zfs(self, args, error):
        return self.change(['zfs'] + args, error=error)

    def _options(self, properties):
        argv = []
        for name, value in sorted(properties.items()):
            argv += ['-o', '%s=%s' % (name, value)]
        return argv

    def _new_properties(self):
        """The properties a new zvol is created with: ``zfs.properties``, volblocksize 16K unless they set it."""
        properties = dict(self.properties)
        properties.setdefault('volblocksize', str(DEFAULT_VOLBLOCKSIZE))
        return properties

    def create_volume(self, name, size, fmt):
        properties = self._new_properties()
        self._zfs(['create', '-V', str(size)] + (['-s'] if self.sparse else []) + self._options(properties)
                  + [self._dataset(name)], error='Creating zvol %s failed' % self._dataset(name))

    def _clone_properties(self, name, source_volume):
        """The properties a clone of ``source_volume`` is made with; refuse what ZFS would refuse.

        A clone keeps its source's volblocksize, so another one is refused here,
        before any command runs.
        """
        properties = dict(self.properties)
        wanted = properties.pop('volblocksize', None)
        have = source_volume.details.get('volblocksize') if source_volume is not None else None
        if wanted is not None and have is not None and int(wanted) != have:
            raise InvalidInputError('A clone keeps the volblocksize of its source (%d), so volblocksize=%s cannot '
                                    'be set on volume %s.' % (have, wanted, name))
        return properties

    def predict_volume(self, predicted):
        """A new volume as a create or a clone will make it; a clone that ZFS would refuse is refused here."""
        origin = predicted.origin or {}
        source = None
        if origin.get('volume'):
            found = self.records(self.listing(fresh=False, volume=origin['volume']), origin['volume'])[0]
            source = found[0] if found else None
            properties = self._clone_properties(predicted.name, source)
            volblocksize = source.details['volblocksize'] if source is not None else None
        else:
            properties = self._new_properties()
            volblocksize = int(properties['volblocksize'])
        dataset = self._dataset(predicted.name)
        return predicted.replace(details={
            'dataset': dataset, 'path': '/dev/zvol/%s' % dataset, 'guid': None, 'volblocksize': volblocksize,
            'used': None, 'referenced': None, 'sparse': self.sparse if source is None else True, 'format': 'raw',
            'properties': dict((p, properties.get(p, self.properties.get(p))) for p in sorted(self.properties))})

    def clone_volume(self, name, source, snapshot, size, fmt):
        found = self.records(self.listing(fresh=False, volume=source), source)
        source_volume = found[0][0] if found[0] else None
        properties = self._clone_properties(name, source_volume)
        made = None
        if not snapshot:
            # The implicit snapshot is named after the clone, so a retry finds and reuses it.
            snapshot = CLONE_SNAPSHOT_PREFIX + name
            if not any(s.name == snapshot for s in found[1].get(source, [])):
                made = self._dataset(source, snapshot)
                self._zfs(['snapshot', made], error='Taking snapshot %s for the clone failed' % made)
        try:
            self._zfs(['clone'] + self._options(properties) + [self._dataset(source, snapshot), self._dataset(name)],
                      error='Cloning %s into %s failed' % (self._dataset(source, snapshot), self._dataset(name)))
        except StorageError:
            if made is not None:
                # Best effort: the clone failed, so the snapshot made for it has no dependant.
                self.runner.run(['zfs', 'destroy', made], check=False)
                self.forget()
            raise
        current = self.read_volume(name)[0]
        if current is not None and current.size < size:
            self.extend_volume(name, size)

    def extend_volume(self, name, size):
        self._zfs(['set', 'volsize=%d' % size, self._dataset(name)],
                  error='Growing zvol %s failed' % self._dataset(name))

    def set_properties(self, name, properties):
        self._zfs(['set'] + ['%s=%s' % item for item in sorted(properties.items())] + [self._dataset(name)],
                  error='Setting properties of zvol %s failed' % self._dataset(name))

    def delete_volume(self, name):
        snapshots = self.records(self.listing(fresh=False, volume=name), name)[1].get(name, [])
        blocked = ['%s (%s)' % (s.name, ', '.join(_dependents(s))) for s in snapshots if _dependents(s)]
        if blocked:
            raise StorageError('Volume %s cannot be deleted: its snapshots %s still have clones or holds that '
                               'depend on them; delete those first.' % (name, '; '.join(blocked)))
        if snapshots:
            self._zfs(['destroy', self._dataset(name, ','.join(s.name for s in snapshots))],
                      error='Destroying the snapshots of zvol %s failed' % self._dataset(name))
        self._zfs(['destroy', self._dataset(name)], error='Destroying zvol %s failed' % self._dataset(name))

    def create_snapshot(self, volume, name, temporary=False):
        self._zfs(['snapshot'] + (['-o', '%s=yes' % TEMPORARY_PROPERTY] if temporary else [])
                  + [self._dataset(volume, name)],
                  error='Taking snapshot %s failed' % self._dataset(volume, name))

    def delete_snapshot(self, volume, name):
        snapshots = self.records(self.listing(fresh=False, volume=volume), volume)[1].get(volume, [])
        snapshot = next((s for s in snapshots if s.name == name), None)
        if snapshot is None:
            return
        deferred = bool(snapshot.details['clones'] or snapshot.details['holds'])
        self._zfs(['destroy'] + (['-d'] if deferred else []) + [self._dataset(volume, name)],
                  error='Destroying snapshot %s failed' % self._dataset(volume, name))

    # -- the data mover ------------------------------------------------------------------

    def location(self):
        return self.parent

    def snapshot_identity(self, snapshot):
        return snapshot.details.get('guid')

    def _device(self, dataset):
        """Wait until udev has made the device node of ``dataset``; return its path."""
        path = '/dev/zvol/%s' % dataset
        self.runner.run(['udevadm', 'settle'], check=False)
        deadline = time.monotonic() + DEVICE_TIMEOUT
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise StorageError('The device node %s of %s did not appear within %d seconds.'
                                   % (path, dataset, DEVICE_TIMEOUT))
            time.sleep(0.2)
        return path

    @contextmanager
    def open_snapshot(self, snapshot):
        """Read ``snapshot`` from its device node, shown with ``snapdev=visible`` while it is read.

        The zvol's ``snapdev`` is set back afterwards (inherited again when it was).
        """
        from ansible_collections.stratum.storage.plugins.module_utils._mover import BlockReader

        volume = self._dataset(snapshot.volume)
        found = self.runner.run(['zfs', 'get', '-H', '-p', '-o', 'value,source', 'snapdev', volume],
                                error='Reading snapdev of %s failed' % volume).stdout.split('\t')
        value, source = found[0].strip(), (found[1].strip() if len(found) > 1 else '')
        if value != 'visible':
            self.runner.run(['zfs', 'set', 'snapdev=visible', volume], error='Showing the snapshot devices of %s '
                            'failed' % volume)
        try:
            path = self._device(snapshot.details['dataset'])
            with BlockReader(path, snapshot.size, 'Snapshot %s' % snapshot.details['dataset']) as reader:
                yield reader
        finally:
            if value != 'visible':
                back = ['inherit', 'snapdev'] if source in ('default', '-') or source.startswith('inherited') \
                    else ['set', 'snapdev=%s' % value]
                self.runner.run(['zfs'] + back + [volume], check=False)

    def restore_volume(self, name, image, size, fmt):
        from ansible_collections.stratum.storage.plugins.module_utils._mover import restore_into_device

        dataset = self._dataset(name)
        properties = self._new_properties()
        properties[STATUS_PROPERTY] = 'creating'
        self._zfs(['create', '-V', str(size)] + (['-s'] if self.sparse else []) + self._options(properties)
                  + [dataset], error='Creating zvol %s failed' % dataset)
        # a new zvol reads as zeros: only data is written, so a sparse one stays sparse
        restore_into_device(self.runner, image, self._device(dataset), 'zvol %s' % dataset, size, zeroed=True)
        self._zfs(['inherit', STATUS_PROPERTY, dataset], error='Marking zvol %s complete failed' % dataset)

    # -- replication ---------------------------------------------------------------------

    @contextmanager
    def replica_stream(self, volume, snapshot, base=None, token=None):
        """Yield the ``zfs send`` stream of ``snapshot`` (from ``base``, or resumed from ``token``).

        One snapshot a stream: the receiver accepts plain streams only (``-I`` makes a package).
        """
        from ansible_collections.stratum.storage.plugins.module_utils._mover import streamed

        if token:
            argv = ['zfs', 'send', '-t', token]
        else:
            argv = ['zfs', 'send'] + (['-i', self._dataset(volume, base)] if base else [])
            argv.append(self._dataset(volume, snapshot))
        with streamed(self.runner, argv, 'Sending snapshot %s' % self._dataset(volume, snapshot)) as stream:
            yield stream

    def resume_target(self, token):
        """The ``(dataset, guid)`` that a receive resume token continues, read with ``zfs send -nv -t``; or None."""
        result = self.runner.run(['zfs', 'send', '-n', '-v', '-t', token], check=False)
        found = dict(RESUME_FIELD_RE.findall(result.stdout + '\n' + result.stderr))
        try:
            return found['toname'], str(int(found['toguid'], 0))
        except (KeyError, ValueError):
            return None

    def holds(self, volume, snapshots):
        """The hold tags on each of ``snapshots`` (names) of ``volume``: name -> set of tags; one command."""
        if not snapshots:
            return {}
        result = self.runner.run(['zfs', 'holds', '-H'] + [self._dataset(volume, s) for s in snapshots],
                                 error='Listing the holds on the snapshots of %s failed' % self._dataset(volume))
        found = dict((s, set()) for s in snapshots)
        for line in result.stdout.splitlines():
            fields = line.split('\t')
            split = self._split(fields[0]) if len(fields) >= 2 else None
            if split is not None and split[1] in found:
                found[split[1]].add(fields[1])
        return found

    def hold(self, volume, snapshot, tag):
        self._zfs(['hold', tag, self._dataset(volume, snapshot)],
                  error='Holding snapshot %s failed' % self._dataset(volume, snapshot))

    def release(self, volume, snapshot, tag):
        self._zfs(['release', tag, self._dataset(volume, snapshot)],
                  error='Releasing the hold %s on snapshot %s failed' % (tag, self._dataset(volume, snapshot)))

    def replica_state(self, volume):
        """What a replication source needs besides the listing: the resume token, bytes written since the newest
        snapshot, and a snapshot that arrived while the mark of its receive stayed (``replacing``)."""
        result = self.runner.run(['zfs', 'get', '-H', '-p', '-o', 'property,value', 'receive_resume_token,written',
                                  self._dataset(volume)], check=False)
        found = dict(line.split('\t', 1) for line in result.stdout.splitlines() if '\t' in line)
        token = found.get('receive_resume_token', '-')
        # from the listing the caller read just before (``read_volume``), so no second ``zfs list`` runs
        kept = self.kept_listing(volume)
        replacing = self._arrived_mark(kept, volume) if kept is not None else None
        return {'token': None if token in ('-', '') else token, 'written': _int(found.get('written')),
                'replacing': replacing}

    def _arrived_mark(self, listing, volume):
        """S when the zvol still carries the mark of receiving S but S has arrived (the run was killed before it
        dropped the mark); None otherwise."""
        dataset = self._dataset(volume)
        row = next((r for r in listing if r['name'] == dataset and r['type'] == 'volume'), None)
        prefix = dataset + '@'
        rows = dict((r['name'][len(prefix):], r) for r in listing
                    if r['type'] == 'snapshot' and r['name'].startswith(prefix))
        return None if row is None else _arrived(row, rows)

    def settle(self, volume, fresh=True, apply=True):
        """Drop the mark of a receive that was killed after its snapshot arrived (called under the lock)."""
        arrived = self._arrived_mark(self.listing(fresh=fresh, volume=volume), volume)
        if arrived is None:
            return None
        if apply:
            self._zfs(['inherit', STATUS_PROPERTY, self._dataset(volume)],
                      error='Marking zvol %s complete failed' % self._dataset(volume))
        return 'finish what the receive of replica snapshot %s left on volume %s' % (arrived, volume)

    def receive(self, volume, snapshot, identity, base_identity, resume, stream):
        """Receive ``snapshot`` (guid ``identity``) of ``volume`` from ``stream``; return its record.

        ``base_identity`` None: the zvol is created (``inbound:S`` until done);
        else it must hold that snapshot as its newest, unchanged since (checked by
        the caller, ``_replica.check_target``). ``resume`` continues a cut receive.
        """
        from ansible_collections.stratum.storage.plugins.module_utils._mover import relay

        dataset = self._dataset(volume)
        argv = ['zfs', 'receive', '-s', '-u']
        begin = check_stream_begin(stream, identity, base_identity, resume)  # before any mark: it may not come
        if resume:
            pass
        elif base_identity is None:
            argv += ['-o', '%s=%s%s:%s' % (STATUS_PROPERTY, INBOUND_PREFIX, snapshot, identity)]
        else:
            self._zfs(['set', '%s=%s%s:%s' % (STATUS_PROPERTY, RECEIVING_PREFIX, snapshot, identity), dataset],
                      error='Marking zvol %s as receiving failed' % dataset)
        process = self.runner.spawn(argv + [dataset], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        cut = None
        try:
            relay(stream, process.stdin, first=begin)
        except StorageError as exc:  # the client went silent: zfs receive has its end of stream now
            cut = exc
        err = process.stderr.read()
        process.wait()
        self.forget()
        if process.returncode != 0 or cut is not None:
            if base_identity is not None and not resume and not self.replica_state(volume)['token']:
                self.runner.run(['zfs', 'inherit', STATUS_PROPERTY, dataset], check=False)  # nothing arrived
            if cut is not None:
                raise cut
            lines = err.decode('utf-8', 'replace').strip().splitlines()
            raise StorageError('Receiving snapshot %s into %s failed: %s.'
                               % (snapshot, dataset, lines[-1].rstrip('.') if lines else 'the stream ended early'))
        arrived = next((s for s in self.read_volume(volume)[1] if s.name == snapshot), None)
        if arrived is None or arrived.details.get('guid') != identity:
            raise StorageError('Snapshot %s arrived in %s with guid %s, not %s; it stays inbound.'
                               % (snapshot, dataset, arrived.details.get('guid') if arrived else 'none', identity))
        self._zfs(['inherit', STATUS_PROPERTY, dataset], error='Marking zvol %s complete failed' % dataset)
        # the mark was all that kept it inbound: a snapshot just received has no deferred destroy
        return arrived.replace(status='available')

    def abort_receive(self, volume):
        """Drop what a cut receive into ``volume`` left (a zvol it was creating goes with it)."""
        dataset = self._dataset(volume)
        if self.replica_state(volume)['token']:
            self._zfs(['receive', '-A', dataset], error='Aborting the interrupted receive into %s failed' % dataset)
        if self.read_volume(volume)[0] is not None:
            self._zfs(['inherit', STATUS_PROPERTY, dataset], error='Clearing the receive mark of %s failed' % dataset)


def _receive_mark(mark):
    """``(prefix, snapshot, guid)`` of a receive's mark; guid None in a mark written by 0.2.0."""
    for prefix in (RECEIVING_PREFIX, INBOUND_PREFIX):
        if mark.startswith(prefix):
            name, _colon, guid = mark[len(prefix):].partition(':')
            return (prefix, name, guid or None) if is_valid_name(name) else None
    return None


def _arrived(row, snapshots):
    """S when zvol ``row`` carries the mark of receiving S (guid G) and S is there with guid G and no receive
    is left to resume: ``zfs receive`` makes a snapshot only once its data is complete. ``snapshots`` maps the
    zvol's snapshot names to their rows. A mark without a guid is matched by the name alone."""
    receive = _receive_mark(row[STATUS_PROPERTY])
    if receive is None or row['receive_resume_token'] not in ('-', ''):
        return None
    found = snapshots.get(receive[1])
    if found is None or (receive[2] is not None and found['guid'] != receive[2]):
        return None
    return receive[1]


def _dependents(snapshot):
    """The clones and holds that keep ``snapshot`` from being destroyed now, as text."""
    holds = snapshot.details['holds']
    return snapshot.details['clones'] + (['%d hold(s)' % holds] if holds else [])


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_list(text, columns):
    """Parse ``zfs list -H -p`` output (tab-separated, one dataset per line) into dicts."""
    rows = []
    width = len(columns)
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split('\t')
        if len(fields) != width:
            raise StorageError('zfs list printed %d columns where %d were asked for: %r.'
                               % (len(fields), width, line[:200]))
        rows.append(dict(zip(columns, fields)))
    return rows


def check_stream_begin(stream, identity, base_identity, resume):
    """Read and check the BEGIN record of a ``zfs send`` stream; return its bytes (with its payload).

    Only a single zvol snapshot is received: a plain substream (not a package of
    several datasets or properties), of a zvol, not flagged as a clone (whose
    origin ZFS would look up in the whole pool), from snapshot ``identity``
    (guid) and from ``base_identity`` (or full). A payload (the resume state) is
    accepted only when resuming.
    """
    head = stream.read(BEGIN.size)
    if head is None or len(head) != BEGIN.size:
        raise StorageError('The ZFS stream ended before its first record.')
    fields = BEGIN.unpack(head)
    if fields[2] != STREAM_MAGIC:
        swapped = struct.Struct('>II QQQ II QQ 256s').unpack(head)
        if swapped[2] != STREAM_MAGIC:
            raise StorageError('The data is not a ZFS send stream; refused.')
        fields = swapped
    kind, payload, _magic, version, _created, objset, flags, toguid, fromguid, _name = fields
    problems = []
    if kind != 0:
        problems.append('it does not start with a BEGIN record')
    if version & 3 != SUBSTREAM:
        problems.append('it is a package of several streams (send -R, -I or -p)')
    if objset != ZVOL_TYPE:
        problems.append('it is not a zvol')
    if flags & CLONE_FLAG:
        problems.append('it is a clone stream')
    if str(toguid) != str(identity):
        problems.append('it carries snapshot guid %d, not %s' % (toguid, identity))
    if str(fromguid) != str(base_identity or 0) and not (resume and fromguid):
        problems.append('it starts from guid %d, not %s' % (fromguid, base_identity or 'nothing'))
    if payload and not resume:
        problems.append('it carries a payload')
    if payload > 1 << 20:
        problems.append('its payload is %d bytes' % payload)
    if problems:
        raise StorageError('The ZFS stream is refused: %s.' % '; '.join(problems))
    extra = stream.read(payload) if payload else b''
    if len(extra) != payload:
        raise StorageError('The ZFS stream ended inside its first record.')
    return head + extra
