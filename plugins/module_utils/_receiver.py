# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication receiver: the one command that a replication key may run on a target host.

The key's ``authorized_keys`` entry forces it (``command="stratum-receiver
--config FILE"``, with ``restrict`` and ``from=``), so whatever the client
asks arrives in ``SSH_ORIGINAL_COMMAND``. It is split like a shell would split
words, but no shell ever runs it, and it is served only when it is one of the
receive verbs (``_replica.VERBS``) for a parent dataset, volume group or
directory that the configuration file lists::

    {"zfs": ["tank/replicas"], "lvm": ["vg0/pool"], "nfs": ["/srv/replicas"]}

A transfer whose client sends nothing for ``idle_seconds`` (300 unless the file
sets it) is cut, as a dropped connection would cut it, so a silent client holds
no volume for longer. A transfer into an LVM thin pool stops once the pool's
data or metadata is ``thin_pool_max_percent`` (95 unless set) full, read before it
writes and every 256 MiB it writes, so a replica does not fill the pool that the
other thin volumes write to; one into an nfs directory stops likewise once the
directory's filesystem is ``filesystem_max_percent`` (95 unless set) full.

A ``session`` request answers as ``info`` does and then reads further requests,
one line each, from the same connection (``Session``), so a replica needs one
command on the target, not two.

Every request is logged to syslog (ident ``stratum-receiver``) with the
client's address, refused ones as warnings. The answer is one JSON line:
the result, or ``{"error": "<one sentence>"}`` with exit code 2 (refused)
or 1 (failed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import syslog

from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._mover import (
    RELAY_CHUNK, QuietLimit, read_header, receive_blocks, widen_pipe)
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS
from ansible_collections.stratum.storage.plugins.module_utils._replica import check_target, config_of, parse_words
from ansible_collections.stratum.storage.plugins.module_utils._runner import ProcessRunner

DEFAULT_CONFIG = '/etc/stratum-storage/receiver.json'
#: how long a client may send nothing while it transfers, unless the configuration sets ``idle_seconds``
IDLE_SECONDS = 300
#: how full (percent, data or metadata) a thin pool may get from a receive, unless ``thin_pool_max_percent`` is set
THIN_POOL_MAX_PERCENT = 95
#: how full (percent, as df counts) the filesystem of an nfs directory may get from a receive, unless
#: ``filesystem_max_percent`` is set
FILESYSTEM_MAX_PERCENT = 95
IDENT = 'stratum-receiver'


class Refused(InvalidInputError):
    """A request that this receiver does not serve."""


def load_config(path):
    """The receiver's configuration: backend name -> the locations it may write, ``idle_seconds``,
    ``thin_pool_max_percent`` and ``filesystem_max_percent``."""
    try:
        with open(path, 'rb') as handle:
            config = json.loads(handle.read().decode('utf-8'))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, 'strerror', None) or exc
        raise StorageError('The receiver configuration %s cannot be read: %s.' % (path, reason))
    idle = config.pop('idle_seconds', IDLE_SECONDS) if isinstance(config, dict) else None
    limits = dict((key, config.pop(key, default) if isinstance(config, dict) else None)
                  for key, default in (('thin_pool_max_percent', THIN_POOL_MAX_PERCENT),
                                       ('filesystem_max_percent', FILESYSTEM_MAX_PERCENT)))
    if not isinstance(config, dict) or any(name not in BACKENDS or not isinstance(places, list)
                                           or not all(isinstance(p, str) and p for p in places)
                                           for name, places in config.items()):
        raise StorageError('The receiver configuration %s must map backend names (%s) to lists of locations.'
                           % (path, ', '.join(sorted(BACKENDS))))
    if not isinstance(idle, int) or isinstance(idle, bool) or not 1 <= idle <= 86400:
        raise StorageError('The receiver configuration %s has idle_seconds %r; it must be a whole number of seconds '
                           'from 1 to 86400.' % (path, idle))
    for key, limit in sorted(limits.items()):
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            raise StorageError('The receiver configuration %s has %s %r; it must be a whole number from 1 to 100.'
                               % (path, key, limit))
    config['idle_seconds'] = idle
    config.update(limits)
    return config


def _listed(backend, snapshots):
    return [dict(s.to_dict(), identity=backend.snapshot_identity(s)) for s in snapshots]


def _volume_answer(volume):
    """``volume`` as the client sees it: a clone's origin by its volume and snapshot names in this place only.

    A clone of a dataset outside the configured parent is listed with the outside name
    (ZFS ``origin``); the client learns that it is a clone, not what lies outside.
    """
    record = volume.to_dict()
    if record.get('origin'):
        origin = record['origin']
        record['origin'] = {'volume': origin.get('volume'), 'snapshot': origin.get('snapshot')}
    return record


class Session:
    """The requests of one connection that began with ``session`` (``info``, then more on the same input).

    ``session`` answers as ``info`` does, with ``"session": true``; the client
    then sends each further request as one line of words on its input (``abort``,
    ``delete``, ``info``, and last a ``receive``, whose data follows it), or ends its
    input. They must name the place and volume that ``session`` named. It keeps
    what it read and the marks of the volume's lock from before it read: a ZFS
    receive whose lock shows no run in between starts from that read.
    """

    def __init__(self):
        self.subject = None
        self.backend = None
        self.turns = None
        self.read = None

    def reuse(self, taken):
        """What ``info`` read, if the lock marks ``taken`` on taking the lock show that no run came since."""
        if self.read is not None and self.turns is not None and taken == self.turns:
            return self.read
        return None


def serve(words, config, stream, runner, answer=None, session=None):
    """Answer one request (a list of words) with a dict; raise ``StorageError`` (``Refused``) otherwise.

    ``stream`` is the request's input (binary), ``answer`` where a block stream's checksums go back,
    ``session`` the ``Session`` of the connection (None: this request is all it serves).
    """
    try:
        verb, kind, location, volume = parse_words(words)[:4]
    except InvalidInputError as exc:
        raise Refused(exc.message)
    if kind not in BACKENDS or location not in (config.get(kind) or []):
        raise Refused('%s %s is not configured for receiving on this host.' % (kind, location))
    if session is not None and session.subject not in (None, (kind, location, volume)):
        raise Refused('A request in a session must name the place and volume that the session named (%s %s %s).'
                      % session.subject)
    where = '%s %s' % (kind, location)
    if session is not None and session.backend is not None:
        backend = session.backend
    else:
        backend = BACKENDS[kind].backend(runner, config_of(kind, location))
        backend.confined = True  # LVM: only the configured pool (or the thick LVs) of the volume group
        backend.pool_limit = config.get('thin_pool_max_percent', THIN_POOL_MAX_PERCENT)  # LVM thin
        backend.space_limit = config.get('filesystem_max_percent', FILESYSTEM_MAX_PERCENT)  # nfs
        backend.connect(apply=False)
    if verb in ('info', 'session'):
        turns = backend.lock_turns([volume])
        current, snapshots = backend.read_volume(volume)
        state = backend.replica_state(volume) if current is not None else {'token': None, 'written': None}
        if session is not None:
            session.subject, session.backend = (kind, location, volume), backend
            session.turns, session.read = turns, (current, snapshots, state)
        # keepalive: this receiver skips KEEPALIVE records in a block stream (older ones refuse them);
        # session: it reads the next request from this connection's input
        if verb == 'session' and session is not None:  # how long it waits for the next request
            state = dict(state, session_seconds=config.get('idle_seconds', IDLE_SECONDS))
        return dict(state, keepalive=True, session=verb == 'session' and session is not None,
                    volume=_volume_answer(current) if current is not None else None,
                    snapshots=_listed(backend, snapshots))
    if verb == 'receive':
        return _receive(backend, volume, words, stream, answer, where, session)
    with backend.lock([volume]):
        if verb == 'abort':  # it first finishes what a receive killed after its data was complete left
            backend.abort_receive(volume)
            return {'aborted': volume}
        current, snapshots = backend.read_volume(volume)
        if backend.settle(volume, fresh=False):  # such a receive is finished before a delete, not left half made
            current, snapshots = backend.read_volume(volume)
        name = words[4]
        existing = next((s for s in snapshots if s.name == name), None)
        if existing is None:
            return {'deleted': None}
        if words[5] != '-' and backend.snapshot_identity(existing) != words[5]:
            raise Refused('Snapshot %s of volume %s in %s is not the replica named (identity %s); it is left '
                          'alone.' % (name, volume, where, backend.snapshot_identity(existing)))
        from ansible_collections.stratum.storage.plugins.module_utils._planner import plan_snapshot  # deletes only

        actions, _left = plan_snapshot({'volume': volume, 'name': name, 'state': 'absent'}, current, snapshots,
                                       backend.name, backend.deferred_delete,
                                       leftover=backend.predict_deleted_snapshot(existing))
        for action in actions:
            action.apply(backend)
        return {'deleted': name}


def _receive(backend, volume, words, stream, answer, where, session=None):
    """Receive snapshot ``words[4]``: checked under the volume's lock, the data written outside it."""
    name, identity, base, mode = words[4:8]
    if mode not in ('new', 'resume'):
        raise Refused('Receive mode %r is neither new nor resume.' % mode)
    base = None if base == '-' else base

    def check(current, snapshots, state):
        """Raise unless the target may take this transfer now (called under the volume's lock)."""
        cut = state.get('token') or state.get('inbound')
        if mode == 'resume':
            if not cut:
                raise StorageError('Volume %s in %s has no cut transfer to resume.' % (volume, where))
        elif base is None:
            if current is not None:
                raise StorageError('Volume %s exists in %s already; a first replica only creates a volume, so it is '
                                   'refused.' % (volume, where))
        else:
            if current is None:
                raise StorageError('Volume %s does not exist in %s, so changes cannot be applied to it.'
                                   % (volume, where))
            if cut:
                raise StorageError('Volume %s in %s has a cut transfer; resume or abort it first.' % (volume, where))
            check_target(volume, _listed(backend, snapshots), state.get('written'), base, where)

    if hasattr(backend, 'receive'):  # the backend's own stream (zfs send), under the lock throughout
        with backend.lock([volume]) as taken:
            read = session.reuse(taken) if session is not None else None
            if read is None:
                current, snapshots = backend.read_volume(volume)
                read = current, snapshots, backend.replica_state(volume) if current is not None else {}
            check(*read)
            record = backend.receive(volume, name, identity, base, mode == 'resume', stream)
        return {'snapshot': _listed(backend, [record])[0]}
    header = read_header(stream)
    created = header.get('created')
    if created is not None and not isinstance(created, str):
        raise Refused('The block stream header has a creation time that is not text.')
    with backend.receive_into(volume, name, identity, base, header['size'], created, mode == 'resume',
                              check) as image:
        written, zeroed = receive_blocks(image, header, stream, answer)
    record = next(s for s in backend.read_volume(volume)[1] if s.name == name)
    return {'snapshot': _listed(backend, [record])[0], 'bytes_written': written, 'bytes_zeroed': zeroed}


def _log(priority, text):
    """Log one line; control characters and anything not ASCII are escaped, so no request forges a line."""
    try:
        syslog.openlog(IDENT, 0, syslog.LOG_AUTH)
        syslog.syslog(priority, text.encode('unicode_escape', 'backslashreplace').decode('ascii'))
    except (OSError, UnicodeError):
        pass


#: the longest request line that a session reads
LINE_LIMIT = 4096


def _next_request(stream):
    """The words of the request that follows in a session; None at the end of the input."""
    try:
        line = stream.readline(LINE_LIMIT + 1)
    except Refused:
        raise
    except StorageError as exc:  # the client went silent
        raise Refused(exc.message)
    if not line:
        return None
    if len(line) > LINE_LIMIT or not line.endswith(b'\n'):
        raise Refused('A request in a session must be one line of at most %d bytes.' % LINE_LIMIT)
    try:
        return shlex.split(line.decode('utf-8'))
    except (UnicodeError, ValueError) as exc:
        raise Refused('A request in a session cannot be split into words: %s.' % exc)


def _serve_one(words, command, client, config, stream, session, failed=None):
    """Serve one request (or answer ``failed``, why it cannot be read) and log it; return ``(answer, exit code)``."""
    try:
        if failed is not None:
            raise failed
        answer = serve(words, config, stream, ProcessRunner(), sys.stdout.buffer, session)
        _log(syslog.LOG_INFO, 'served %s from %s' % (command[:300], client))
        return answer, 0
    except Refused as exc:
        _log(syslog.LOG_WARNING, 'refused %r from %s: %s' % (command[:300], client, exc.message))
        return {'error': exc.message}, 2
    except StorageError as exc:
        _log(syslog.LOG_ERR, 'failed %s from %s: %s' % (command[:300], client, exc.message))
        return {'error': exc.message}, 1
    except OSError as exc:
        answer = {'error': 'The receiver failed: %s.' % (exc.strerror or exc)}
        _log(syslog.LOG_ERR, 'failed %s from %s: %s' % (command[:300], client, answer['error']))
        return answer, 1
    except Exception as exc:  # pylint: disable=broad-except  # the answer is always one JSON line
        _log(syslog.LOG_ERR, 'failed %s from %s: %r' % (command[:300], client, exc))
        return {'error': 'The receiver failed on this request (%s).' % type(exc).__name__}, 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog=IDENT, description='Receives replicas; run as the forced command of a '
                                     'replication key, with the request in SSH_ORIGINAL_COMMAND.')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    # the client's address and port: the requests of one shared connection name the same port
    client = ' port '.join((os.environ.get('SSH_CONNECTION') or 'local').split(' ')[:2])
    command = os.environ.get('SSH_ORIGINAL_COMMAND')
    words, config, stream, failed = [], None, None, None
    try:
        if command is None:
            raise Refused('No request: this key runs only the replication receiver, which takes a request.')
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise Refused('The request cannot be split into words: %s.' % exc)
        config = load_config(args.config)
        widen_pipe(sys.stdin)  # sshd writes what arrives into it (a block stream is read, not spliced)
        stream = io.BufferedReader(QuietLimit(sys.stdin.fileno(), config['idle_seconds']), RELAY_CHUNK)
    except StorageError as exc:
        failed = exc
    session, opened = Session(), words[:1] == ['session']
    while True:
        answer, code = _serve_one(words, command or '', client, config, stream, session, failed)
        _write(answer, code)
        # a served session reads the next request from the input; a receive reads the input to its end
        if code != 0 or not opened or words[0] == 'receive':
            return code
        try:
            following = _next_request(stream)
        except Refused as exc:
            words, command, failed = [], 'a request after %s' % command, exc
            continue
        if following is None:
            return code
        words, command = following, ' '.join(following)


def _write(answer, code):
    """Write ``answer`` as one JSON line; return ``code``."""
    sys.stdout.write(json.dumps(answer) + '\n')
    sys.stdout.flush()
    return code
