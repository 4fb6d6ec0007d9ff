# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication: make snapshot S of a volume exist on a peer host, sent from the newest common snapshot.

The ``replica`` module runs on the source host. It asks the peer's receiver
(``_receiver``, the only command the replication key may run there) what the
target volume holds, plans the transfer with ``plan_replica`` (a pure
function, so check mode tells the truth), and pushes the data over SSH: it
goes from the source host to the peer, never through the controller.

The common base is the newest snapshot that both sides hold with the same
identity (the ZFS guid, which ``zfs send`` carries), never a name alone. With
no common base and an existing target volume, or a target that changed since
the base, the transfer is refused. The source's last replicated snapshot is
protected from deletion by a hold named after the peer, released from the
previous one once a newer snapshot has arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from typing import NamedTuple, Optional

from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._mover import (
    Counted, PeerStopped, relay, send_blocks, widen_pipe)
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name

HOLD_PREFIX = 'stratum-replica:'
HOLD_MAX = 200
HOST_RE = re.compile(r'[A-Za-z0-9_.:\[\]-]+')
USER_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*')
#: the receiver's verbs, and what each writes on the target
VERBS = ('info', 'session', 'receive', 'abort', 'delete')
#: how the refusal of a receiver that knows no sessions (0.2.0 and before) ends
OLDER_VERBS = '; this key may only run info, receive, abort, delete.'
#: seconds an idle shared SSH connection outlives the module, should it end without closing it
CONTROL_PERSIST = 60
#: seconds a session's receiver gets to end once its client has ended the session's input
SESSION_END_SECONDS = 60


class Peer:
    """The target host, reached with ``ssh`` from the source host: its receiver answers one JSON line."""

    def __init__(self, runner, config):
        self.runner = runner
        self.host = config.get('host')
        self.port = 22 if config.get('port') is None else config['port']
        self.user = config.get('user') or 'root'
        self.key = config.get('key')
        self.known_hosts = config.get('known_hosts')
        self.timeout = config.get('connect_timeout') or 30
        self.control = None
        self.opened = None  # (process, its stderr file, until when) of the session awaiting its next request
        if not isinstance(self.host, str) or not HOST_RE.fullmatch(self.host) or self.host.startswith('-'):
            raise InvalidInputError('target.host %r is not a host name or address.' % (self.host,))
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise InvalidInputError('target.port %r is not a TCP port number.' % (self.port,))
        if not USER_RE.fullmatch(self.user):
            raise InvalidInputError('target.user %r is not a user name.' % (self.user,))
        for what, path in (('target.key', self.key), ('target.known_hosts', self.known_hosts)):
            if path is not None and (not path.startswith('/') or any(c.isspace() for c in path)):
                raise InvalidInputError('%s %r must be an absolute path without spaces.' % (what, path))

    @property
    def label(self):
        return '%s@%s:%d' % (self.user, self.host, self.port)

    def __enter__(self):
        """Share one SSH connection among the calls made until ``__exit__`` (one handshake, not one a call).

        The connection's control socket lives in a new directory that only this
        user can enter, beside the log of ssh (the connection, once in the
        background, says there why it ended); ``__exit__`` stops the connection
        and removes the directory. The directory is in /tmp, whose short path
        keeps the socket's within the kernel's limit (about 107 bytes).
        """
        try:
            self.control = tempfile.mkdtemp(prefix='stratum-ssh-', dir='/tmp')
        except OSError:
            self.control = None  # each call makes its own connection
        return self

    def __exit__(self, *exc):
        self._end_session()
        control, self.control = self.control, None
        if control is None:
            return False
        try:
            if os.path.exists(os.path.join(control, 'm')):
                self.runner.run(['ssh', '-o', 'ControlPath=%s/m' % control, '-O', 'exit', '-p', str(self.port),
                                 '-l', self.user, self.host], check=False)
        finally:
            shutil.rmtree(control, ignore_errors=True)
        return False

    def argv(self, words, stdin=True):
        argv = ['ssh', '-T', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'LogLevel=ERROR',
                '-o', 'ConnectTimeout=%d' % self.timeout, '-o', 'ServerAliveInterval=15',
                '-o', 'ServerAliveCountMax=4', '-p', str(self.port), '-l', self.user]
        if self.control:
            argv += ['-o', 'ControlMaster=auto', '-o', 'ControlPath=%s/m' % self.control,
                     '-o', 'ControlPersist=%d' % CONTROL_PERSIST, '-E', '%s/log' % self.control]
        if not stdin:
            argv.append('-n')
        if self.key:
            argv += ['-i', self.key, '-o', 'IdentitiesOnly=yes']
        if self.known_hosts:
            argv += ['-o', 'UserKnownHostsFile=%s' % self.known_hosts]
        # the words travel as the one command string that the receiver splits again
        return argv + [self.host, ' '.join(shlex.quote(str(w)) for w in words)]

    def session(self, words, meanwhile=None):
        """Ask ``info`` (``words``) in a session, which keeps the receiver for the next request.

        Returns the answer and what ``meanwhile()`` returned: it runs on this host
        while the connection is set up and the receiver reads the target (the
        source's own reads need nothing from the answer). The next ``call``, ``push``
        or ``start`` goes to the same receiver process as one more line on its input,
        so a replica starts one command on the target, not two. A receiver that
        serves no sessions (older ones) is asked ``info`` alone. The receiver waits
        for the next request as long as it waits for data (``session_seconds`` in
        its answer); a request that comes after half of that (the source waited for
        its lock, or compared for long) starts its own command.
        """
        started = time.monotonic()  # the receiver's wait begins later, when it answers
        process, err = self._spawn(['session'] + list(words[1:]))
        try:
            done = meanwhile() if meanwhile is not None else None
        except BaseException:
            _stop(process)
            err.close()
            raise
        return self._session_answer(process, err, words, started), done

    def _session_answer(self, process, err, words, started):
        line = process.stdout.readline()
        answer = _json_line(line)
        if isinstance(answer, dict) and answer.get('session') is True and not answer.get('error'):
            wait = answer.get('session_seconds')
            wait = wait if isinstance(wait, int) and not isinstance(wait, bool) and wait > 0 else 0
            self.opened = process, err, started + wait / 2.0
            return answer
        try:
            return self._finish(process, err, ['session'] + list(words[1:]), first=line)
        except StorageError as exc:
            if exc.details.get('rc') == 2 and exc.message.endswith(OLDER_VERBS):
                return self.call(words)
            raise
        finally:
            _stop(process)
            err.close()

    def call(self, words):
        """Run a receiver verb that reads no data; return its answer."""
        if self._in_session():
            until = self.opened[2]
            with self.start(words) as (process, err):
                line = process.stdout.readline()
                answer = _json_line(line)
                if isinstance(answer, dict) and not answer.get('error'):
                    self.opened = process, err, until  # the session goes on
                    return answer
                return self._finish(process, err, words, first=line)
        result = self.runner.run(self.argv(words, stdin=False), check=False)
        return self._answer(result.rc, result.stdout, result.stderr + self._logged(), words)

    def push(self, words, stream):
        """Run a receiver verb with ``stream`` (a binary file) as its input; return ``(answer, bytes sent)``."""
        with self.start(words) as (process, err):
            sent = relay(stream, process.stdin)  # a receiver that stops reading says why in its answer
            return self._finish(process, err, words, sent=sent), sent

    @contextmanager
    def start(self, words):
        """A receiver serving ``words``, its input and output pipes: the session's, or a new command.

        Yields ``(process, stderr file)``; ``_finish`` reads the answer. What the
        ``with`` block leaves running is stopped when it ends, unless a ``call``
        kept it as the session.
        """
        if self._in_session():
            (process, err, _until), self.opened = self.opened, None
            try:
                process.stdin.write((' '.join(shlex.quote(str(w)) for w in words) + '\n').encode('utf-8'))
                process.stdin.flush()
            except BrokenPipeError:
                pass  # the receiver ended: reading its answer says why
        else:
            process, err = self._spawn(words)
        try:
            yield process, err
        finally:
            if self.opened is None or self.opened[0] is not process:
                _stop(process)
                err.close()

    def _spawn(self, words):
        err = tempfile.TemporaryFile()
        try:
            process = self.runner.spawn(self.argv(words), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        except BaseException:
            err.close()
            raise
        widen_pipe(process.stdin)  # a block stream is written into it, not spliced
        return process, err

    def _finish(self, process, err, words, sent=None, first=b''):
        """End the input of ``process``, wait for it, and return its answer (or raise what it says)."""
        _end_input(process)
        out = first + process.stdout.read()
        rc = process.wait()
        err.seek(0)
        return self._answer(rc, out.decode('utf-8', 'replace'), err.read().decode('utf-8', 'replace') + self._logged(),
                            words, sent)

    def _in_session(self):
        """True when a session waits for the next request and will until it arrives; else it is ended."""
        if self.opened is not None and time.monotonic() >= self.opened[2]:
            self._end_session()
        return self.opened is not None

    def _end_session(self):
        """End the input of a session that got no further request; its receiver then ends."""
        opened, self.opened = self.opened, None
        if opened is not None:
            _stop(opened[0], SESSION_END_SECONDS)
            opened[1].close()

    def _logged(self):
        """What ssh logged since the last call (its errors, and why a shared connection ended); the log is emptied."""
        if not self.control:
            return ''
        try:
            # in our own directory, so no one else's file; ssh appends, so it writes on after the truncation
            with open(os.path.join(self.control, 'log'), 'r+b') as handle:
                text = handle.read(1 << 16).decode('utf-8', 'replace')
                handle.truncate(0)
                return text
        except OSError:
            return ''

    def _answer(self, rc, stdout, stderr, words, sent=None):
        lines = [line for line in stdout.splitlines() if line.strip()]
        answer = None
        if lines:
            try:
                answer = json.loads(lines[-1])
            except ValueError:
                answer = None
        if isinstance(answer, dict) and answer.get('error'):
            raise StorageError('The replication target %s refused: %s' % (self.label, answer['error']),
                               rc=rc, stderr=stderr, **({} if sent is None else {'bytes_sent': sent}))
        if rc == 0 and isinstance(answer, dict):
            return answer
        reason = (stderr.strip().splitlines() or ['no output'])[-1].rstrip('.')
        if sent is not None:
            raise StorageError('The transfer to %s ended after %d bytes (rc=%d: %s); the next run resumes it.'
                               % (self.label, sent, rc, reason), rc=rc, stderr=stderr, bytes_sent=sent)
        if rc == 255:
            raise StorageError('The replication target %s cannot be reached over SSH: %s.' % (self.label, reason),
                               rc=rc, stderr=stderr)
        raise StorageError('The receiver on %s failed to %s (rc=%d): %s.' % (self.label, words[0], rc, reason),
                           rc=rc, stderr=stderr)


def _json_line(line):
    """One answer line as a dict (or None)."""
    try:
        answer = json.loads(line.decode('utf-8', 'replace'))
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _end_input(process):
    try:
        process.stdin.close()
    except BrokenPipeError:
        pass  # the receiver ended already


def _stop(process, wait=0):
    """End ``process``'s input; give it ``wait`` seconds to end, then kill it."""
    _end_input(process)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        pass
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def target_config(target, backend_names):
    """``(backend name, its dict, location text)`` that ``target`` selects: exactly one backend dict."""
    chosen = [name for name in sorted(backend_names) if target.get(name) is not None]
    if len(chosen) != 1:
        raise InvalidInputError('target needs exactly one backend dict (%s) naming where the replica goes; it has %s.'
                                % (', '.join(sorted(backend_names)), ', '.join(chosen) or 'none'))
    name = chosen[0]
    return name, target[name], location_of(name, target[name])


def location_of(backend, config):
    """The text that names a backend's place on the target, as the receiver's configuration lists it."""
    if backend == 'zfs':
        return config.get('parent')
    if backend == 'lvm':
        return config['vg'] + ('/' + config['thin_pool'] if config.get('thin_pool') else '')
    return config.get('path') or config.get('share')


def config_of(backend, location):
    """The backend dict for ``location`` (the inverse of ``location_of``), as the receiver builds its backend."""
    if backend == 'zfs':
        return {'parent': location}
    if backend == 'lvm':
        vg, _sep, pool = location.partition('/')
        return {'vg': vg, 'thin_pool': pool or None}
    return {'path': location, 'file_mode': '0660'}


def hold_tag(peer, location, volume):
    """The name of the hold that keeps the source's last replicated snapshot for this target."""
    tag = '%s%s:%d:%s/%s' % (HOLD_PREFIX, peer.host, peer.port, location, volume)
    if len(tag) > HOLD_MAX:
        tag = HOLD_PREFIX + hashlib.sha256(tag.encode('utf-8')).hexdigest()[:32]
    return tag


class Plan(NamedTuple):
    """What ``plan_replica`` decided: ``mode`` none, full, incremental or resume."""

    mode: str
    base: Optional[str]
    base_identity: Optional[str]
    abort: bool
    replica: Optional[dict]
    actions: list


def check_target(volume, snapshots, written, base_identity, where):
    """Raise unless target volume ``volume`` still holds the base as its newest point, unchanged since.

    ``snapshots`` are the target's snapshot records as dicts with ``identity``.
    """
    arrived = [s for s in snapshots if s.get('status') != 'inbound']
    if not arrived or arrived[-1].get('identity') != base_identity:
        newer = []
        for snap in reversed(arrived):
            if snap.get('identity') == base_identity:
                break
            newer.append(snap['name'])
        raise StorageError('Volume %s on %s changed since the common snapshot: it has snapshot(s) %s that the source '
                           'does not; refused, so nothing on the target is overwritten.'
                           % (volume, where, ', '.join(reversed(newer)) or 'none'))
    if written:
        raise StorageError('Volume %s on %s changed since the common snapshot %s: %d bytes were written to it since; '
                           'refused, so nothing on the target is overwritten.'
                           % (volume, where, arrived[-1]['name'], written))


def plan_replica(chain, snapshot, identity_of, target, where, target_volume, resumes=None, intermediates=False):
    """Plan making ``snapshot`` (a source ``Snapshot``) exist on the target.

    ``chain`` is the source volume's snapshots in order, ``identity_of`` the
    source backend's ``snapshot_identity``, ``target`` the receiver's ``info``
    answer, ``resumes`` the identity that the target's interrupted receive
    continues (or None). Returns a ``Plan``; refusals raise ``StorageError``.
    """
    identity = identity_of(snapshot)
    if not identity:
        raise StorageError('Snapshot %s of volume %s has no identity to match on the target, so it cannot be '
                           'replicated.' % (snapshot.name, snapshot.volume))
    volume = target.get('volume')
    # a receive the receiver was killed finishing (a snapshot that arrived, a volume still to be made from it or
    # still marked): the abort request finishes it first, so the snapshot counts as there (ZFS lists it inbound
    # until its mark goes)
    replacing = target.get('replacing')
    finish = ['finish what the receive of replica snapshot %s left on volume %s on %s'
              % (replacing, target_volume, where)] if replacing else []
    snapshots = [dict(s, status='available') if replacing and s['name'] == replacing and s.get('status') == 'inbound'
                 else s for s in target.get('snapshots') or []]
    same = next((s for s in snapshots if s['name'] == snapshot.name), None)
    if same is not None and same.get('status') == 'available':
        if same.get('identity') == identity:
            return Plan('none', None, None, bool(replacing), same, finish)
        raise StorageError('Volume %s on %s has a snapshot %s that is not a replica of this one (identity %s, not '
                           '%s); refused.' % (target_volume, where, snapshot.name, same.get('identity'), identity))
    predicted = {'name': snapshot.name, 'volume': target_volume, 'backend': snapshot.backend, 'status': 'available',
                 'size': snapshot.size, 'created': snapshot.created, 'parent': None,
                 'details': {'identity': identity}}
    label = 'snapshot %s of volume %s to %s' % (snapshot.name, snapshot.volume, where)
    cut = bool(target.get('token') or target.get('inbound'))
    if cut and resumes == identity:
        return Plan('resume', None, None, False, predicted, ['resume sending %s where the cut transfer stopped'
                                                             % label])
    abort = cut or (volume is not None and volume.get('status') == 'inbound' and not replacing)
    actions = ['abort the unfinished receive into volume %s on %s' % (target_volume, where)] if abort else finish
    abort = abort or bool(replacing)
    snapshots = [s for s in snapshots if s.get('status') != 'inbound']
    if abort and not snapshots:
        volume = None  # a volume that a cut replica was creating goes with the abort
    if volume is None:
        return Plan('full', None, None, abort, predicted, actions + ['send all of %s' % label])
    held = dict((s.get('identity'), s) for s in snapshots if s.get('status') == 'available' and s.get('identity'))
    base = None
    for snap in chain:
        if snap.name == snapshot.name:
            break
        if snap.status == 'available' and identity_of(snap) in held:
            base = snap
    if base is None:
        raise StorageError('Volume %s exists on %s but holds no snapshot of volume %s older than %s with the same '
                           'identity, so there is no common base; refused, so nothing on the target is overwritten.'
                           % (target_volume, where, snapshot.volume, snapshot.name))
    check_target(target_volume, snapshots, target.get('written'), identity_of(base), where)
    predicted['parent'] = held[identity_of(base)]['name']
    how = 'and the snapshots between' if intermediates else ''
    return Plan('incremental', base.name, identity_of(base), abort, predicted,
                actions + ['send the changes of %s since snapshot %s %s' % (label, base.name, how)])


def parse_words(words):
    """Check a receiver request: ``[verb, backend, location, volume, ...]``; return it with names validated."""
    if not words or words[0] not in VERBS:
        raise InvalidInputError('Unknown request %r; this key may only run %s.'
                                % (' '.join(words)[:200], ', '.join(VERBS)))
    counts = {'info': 4, 'session': 4, 'abort': 4, 'delete': 6, 'receive': 8}
    if len(words) != counts[words[0]]:
        raise InvalidInputError('Request %s takes %d words, not %d.' % (words[0], counts[words[0]], len(words)))
    validate_name(words[3], 'volume')
    if len(words) > 4:
        validate_name(words[4], 'snapshot')
    return words


def _public(record):
    """A target record as ``snapshot_info`` lists it: without the identity the receiver adds for matching."""
    record = dict(record)
    record.pop('identity', None)
    record['details'] = dict(record.get('details') or {})
    record['details'].pop('identity', None)
    return record


def _replica_result(module, before, replica, actions, extra, listed):
    """The result; ``listed`` is the target volume's snapshots after the run (as far as known without asking)."""
    replicas = [_public(s) for s in listed]
    if replica is not None:
        replica = _public(replica)
        replicas = [s for s in replicas if s['name'] != replica['name']] + [replica]
        replica = dict(replica, details=dict(replica['details'], **extra))
    result = {'changed': bool(actions), 'actions': actions, 'replica': replica, 'replicas': replicas}
    if module._diff:
        result['diff'] = {'before': before or {}, 'after': replica or {}}
    return result


def ensure_replica(module, backend, runner, backend_names):
    """The ``replica`` module: plan from both sides' state, then (not in check mode) send and hold."""
    params = module.params
    volume = validate_name(params['volume'], 'volume')
    name = validate_name(params['snapshot'], 'snapshot')
    target = params['target']
    kind, _config, location = target_config(target, backend_names)
    if kind != backend.name:
        raise InvalidInputError('The target is a %s backend and the source a %s backend; a replica needs the same '
                                'backend type on both ends.' % (kind, backend.name))
    target_volume = validate_name(target.get('volume') or volume, 'target volume')
    with Peer(runner, target) as peer:
        return _ensure(module, backend, peer, kind, location, target_volume, volume, name)


def _ensure(module, backend, peer, kind, location, target_volume, volume, name):
    params = module.params
    where = '%s %s on %s' % (kind, location, peer.label)
    connected = backend.connect(apply=not module.check_mode)
    tag = hold_tag(peer, location, target_volume)

    def source():
        current, chain = backend.read_volume(volume)
        available = [s.name for s in chain if s.status == 'available']
        return current, chain, backend.holds(volume, available) if available else {}

    info, (current, chain, holds) = peer.session(['info', kind, location, target_volume], source)
    before = next((s for s in info.get('snapshots') or [] if s['name'] == name), None)
    snapshot = next((s for s in chain if s.name == name), None)
    release = sorted(s for s, tags in holds.items() if tag in tags and s != name)
    if params['state'] == 'absent':
        if snapshot is not None and before is not None and before.get('status') == 'available' \
                and before.get('identity') != backend.snapshot_identity(snapshot):
            raise StorageError('Snapshot %s of volume %s on %s is not a replica of this host\'s snapshot %s; it is left '
                               'alone.' % (name, target_volume, where, name))
        actions = (['delete snapshot %s of volume %s on %s' % (name, target_volume, where)] if before else [])
        drop = [s for s, tags in holds.items() if tag in tags and s == name]
        actions += ['release hold %s on snapshot %s' % (tag, s) for s in drop]
        if actions and not module.check_mode:
            if before:
                peer.call(['delete', kind, location, target_volume, name, before.get('identity') or '-'])
            if drop:
                with backend.lock([volume]):  # a hold is written with the volume's other records
                    for snap in drop:
                        backend.release(volume, snap, tag)
        listed = [s for s in info.get('snapshots') or [] if s['name'] != name]
        return _replica_result(module, before, None, connected + actions, {}, listed)
    if current is None:
        raise StorageError('Volume %s does not exist, so it cannot be replicated.' % volume)
    if snapshot is None or snapshot.status != 'available':
        raise StorageError('Snapshot %s of volume %s %s, so it cannot be replicated.'
                           % (name, volume, 'does not exist' if snapshot is None else 'is %s' % snapshot.status))
    resumes = None
    if info.get('token'):
        found = backend.resume_target(info['token'])
        if found is not None and found[0] == snapshot.details.get('dataset'):
            resumes = found[1]
    elif isinstance(info.get('inbound'), dict):
        resumes = info['inbound'].get('identity')
    plan = plan_replica(chain, snapshot, backend.snapshot_identity, info, where, target_volume, resumes,
                        params['intermediate'])
    actions = list(plan.actions)
    needs_hold = tag not in holds.get(name, set())
    if needs_hold:
        actions.append('hold snapshot %s of volume %s with %s' % (name, volume, tag))
    actions += ['release hold %s on snapshot %s' % (tag, s) for s in release]
    extra = {'bytes_sent': 0, 'base': plan.base, 'resumed': plan.mode == 'resume', 'hold': tag}
    replica = plan.replica
    if actions and not module.check_mode:
        with backend.lock([volume]):
            if plan.abort:
                peer.call(['abort', kind, location, target_volume])
            if plan.mode != 'none':
                words = ['receive', kind, location, target_volume, name, backend.snapshot_identity(snapshot)]
                if hasattr(backend, 'replica_stream'):
                    answer, extra['bytes_sent'] = send_stream_replica(backend, peer, words, chain, snapshot, plan,
                                                                      info, params['intermediate'])
                else:
                    answer, extra['bytes_sent'], extra['base'] = send_block_replica(
                        backend, peer, words, chain, snapshot, plan, info)
                replica = answer['snapshot']
                if params['intermediate'] and plan.mode == 'incremental':
                    info = peer.call(['info', kind, location, target_volume])  # the snapshots between arrived too
            if needs_hold:
                backend.hold(volume, name, tag)
            for snap in release:
                backend.release(volume, snap, tag)
    return _replica_result(module, before, replica, connected + actions, extra, info.get('snapshots') or [])


def send_block_replica(backend, peer, words, chain, snapshot, plan, info):
    """Send ``snapshot`` as a block stream: the change set from the base, or everything; return the answer.

    A resumed transfer (and one without a change set into an existing volume)
    first asks the target for the checksums of its clusters, so what arrived
    before is not sent again. Returns ``(answer, bytes sent, base name)``.
    """
    base = None
    if plan.mode == 'resume':
        wanted = (info.get('inbound') or {}).get('base')
        base = next((s for s in chain if wanted and backend.snapshot_identity(s) == wanted
                     and s.status == 'available'), None)
        base_identity = wanted or '-'
    else:
        base = next((s for s in chain if s.name == plan.base), None)
        base_identity = plan.base_identity or '-'
    ranges = backend.changed_ranges(base, snapshot) if base is not None else None
    hashes = plan.mode == 'resume' or (ranges is None and base is not None)
    words = words + [base_identity, 'resume' if plan.mode == 'resume' else 'new']
    with backend.open_snapshot(snapshot) as reader, peer.start(words) as (process, err):
        wire = Counted(process.stdin)
        try:
            send_blocks(reader, snapshot.size, ranges, wire, process.stdout, hashes, created=snapshot.created,
                        keepalive=bool(info.get('keepalive')))
        except (BrokenPipeError, PeerStopped):
            pass  # the receiver stopped reading, or the connection was cut: its answer (or none) says why
        except BaseException:
            if process.poll() is None:  # a failure on this side (reading the snapshot): stop the transfer
                process.kill()
                process.wait()
                raise
        answer = peer._finish(process, err, words, sent=wire.count)
    return answer, wire.count, base.name if base is not None and ranges is not None else None


def send_stream_replica(backend, peer, words, chain, snapshot, plan, info, intermediates):
    """Send ``snapshot`` as the backend's own stream (``zfs send``), one stream a snapshot.

    With ``intermediates`` each snapshot between the base and ``snapshot`` goes
    first, each from the one before. Returns ``(the last answer, bytes sent)``.
    """
    steps = [(plan.base, snapshot)]
    if intermediates and plan.mode == 'incremental':
        names = [s.name for s in chain]
        between = [s for s in chain[names.index(plan.base) + 1:names.index(snapshot.name) + 1]
                   if s.status == 'available']
        steps = list(zip([plan.base] + [s.name for s in between[:-1]], between))
    sent, answer = 0, None
    for base, step in steps:
        base_record = next((s for s in chain if s.name == base), None) if base else None
        request = words[:4] + [step.name, backend.snapshot_identity(step),
                               backend.snapshot_identity(base_record) if base_record else '-',
                               'resume' if plan.mode == 'resume' else 'new']
        token = info.get('token') if plan.mode == 'resume' else None
        with backend.replica_stream(snapshot.volume, step.name, base, token) as stream:
            answer, count = peer.push(request, stream)
        sent += count
    return answer, sent
