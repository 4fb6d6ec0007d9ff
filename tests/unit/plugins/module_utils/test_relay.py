# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""relay: the bytes that reach a process's stdin, in order and counted, spliced between pipes or copied."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _mover

DATA = os.urandom(3 * _mover.RELAY_CHUNK + 12345)
SPLICE = pytest.mark.skipif(not hasattr(os, 'splice'), reason='os.splice needs Python 3.10 (before it relay copies)')
DIGEST = [sys.executable, '-c', 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())']


def producer(data):
    """A process whose stdout (a pipe) carries ``data``."""
    return subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def run_relay(source, first=b''):
    sink = subprocess.Popen(DIGEST, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    sent = _mover.relay(source, sink.stdin, first=first)
    out = sink.stdout.read().decode().strip()
    sink.wait()
    return sent, out


@pytest.fixture
def splices(monkeypatch):
    """Counts the calls of os.splice (still made)."""
    calls = []
    real = getattr(os, 'splice', None)
    if real is None:
        return calls

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(os, 'splice', counted)
    return calls


def feed(data):
    process = producer(data)
    process.stdin.write(data)
    process.stdin.close()
    return process


@SPLICE
def test_pipe_to_pipe_is_spliced_and_counted(splices):
    process = feed(DATA)
    # the reader has read ahead: what it holds goes first, then the kernel moves the rest
    head = process.stdout.read(100)
    sent, out = run_relay(process.stdout, first=head)
    process.wait()
    assert sent == len(DATA)
    assert out == hashlib.sha256(DATA).hexdigest()
    assert len(splices) >= 2


@SPLICE
def test_the_pipes_of_a_splice_are_made_to_hold_a_mib():
    """Both pipes are widened from Linux's 64 KiB, so each end wakes once a MiB; the bytes arrive as sent."""
    import fcntl

    process = feed(DATA)
    sink = subprocess.Popen(DIGEST, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ends = [os.dup(process.stdout.fileno()), os.dup(sink.stdin.fileno())]  # the same pipes, open after relay
    try:
        assert [fcntl.fcntl(fd, _mover._F_GETPIPE_SZ) for fd in ends] == [64 << 10] * 2
        sent = _mover.relay(process.stdout, sink.stdin)
        assert [fcntl.fcntl(fd, _mover._F_GETPIPE_SZ) for fd in ends] == [_mover.PIPE_BYTES] * 2
    finally:
        for fd in ends:
            os.close(fd)  # the sink's input ends with its last writer
    assert sink.stdout.read().decode().strip() == hashlib.sha256(DATA).hexdigest()
    sink.wait()
    process.wait()
    assert sent == len(DATA)


def test_a_pipe_the_kernel_keeps_small_stays_as_it_is(monkeypatch):
    import fcntl

    calls = []

    def refused(fd, command, *args):
        calls.append(command)
        if command == _mover._F_SETPIPE_SZ:
            raise PermissionError(errno.EPERM, 'Operation not permitted')
        return 65536

    monkeypatch.setattr(fcntl, 'fcntl', refused)
    read, write = os.pipe()
    try:
        _mover.widen_pipe(read)  # no error: the relay goes on with the pipe as it is
    finally:
        os.close(read)
        os.close(write)
    assert calls == [_mover._F_GETPIPE_SZ, _mover._F_SETPIPE_SZ]


def test_a_stream_without_descriptor_is_copied(splices):
    sent, out = run_relay(io.BytesIO(DATA), first=b'x')
    assert sent == len(DATA) + 1
    assert out == hashlib.sha256(b'x' + DATA).hexdigest()
    assert splices == []


def test_a_pair_the_kernel_refuses_is_copied(monkeypatch):
    def refused(*args, **kwargs):
        raise OSError(errno.EINVAL, 'Invalid argument')

    monkeypatch.setattr(os, 'splice', refused, raising=False)
    process = feed(DATA)
    sent, out = run_relay(process.stdout)
    process.wait()
    assert (sent, out) == (len(DATA), hashlib.sha256(DATA).hexdigest())


@pytest.mark.parametrize('first', [b'', b'header'])
def test_bytes_a_sink_never_took_are_not_counted(first):
    process = feed(DATA)
    sink = subprocess.Popen([sys.executable, '-c', 'pass'], stdin=subprocess.PIPE)
    sink.wait()
    sent = _mover.relay(process.stdout, sink.stdin, first=first)
    process.stdout.close()
    process.wait()
    assert sent == 0


def test_a_sink_that_stops_reading_midway_ends_the_copy_quietly():
    process = feed(DATA)
    sink = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.buffer.read(300000)'], stdin=subprocess.PIPE)
    sent = _mover.relay(process.stdout, sink.stdin)
    sink.wait()
    process.stdout.close()
    process.wait()
    # what it read, and at most what the pipe held when it left
    assert 300000 <= sent < len(DATA)


def test_without_splice_in_os_the_bytes_are_copied(monkeypatch):
    monkeypatch.delattr(os, 'splice', raising=False)  # Python before 3.10 (managed hosts run 3.8 and later)
    process = feed(DATA)
    sent, out = run_relay(process.stdout, first=b'y')
    process.wait()
    assert (sent, out) == (len(DATA) + 1, hashlib.sha256(b'y' + DATA).hexdigest())


@pytest.mark.parametrize('kernel', [True, False], ids=['spliced', 'copied'])
def test_a_source_silent_for_its_limit_ends_the_relay(kernel, monkeypatch):
    import time
    if not kernel:
        monkeypatch.delattr(_mover.os, 'splice', raising=False)
    client_r, client_w = os.pipe()
    sink_r, sink_w = os.pipe()
    os.write(client_w, b'x' * 30000)  # then the client stays connected and sends nothing
    source = io.BufferedReader(_mover.QuietLimit(client_r, 1), _mover.RELAY_CHUNK)
    started = time.monotonic()
    try:
        with pytest.raises(_mover.StorageError, match='No data arrived for 1 s, so the transfer was cut'):
            _mover.relay(source, open(sink_w, 'wb'), first=b'head')
        waited = time.monotonic() - started
        assert 0.9 <= waited < 5, waited
        assert os.read(sink_r, 200000) == b'head' + b'x' * 30000
    finally:
        for fd in (client_r, client_w, sink_r):
            os.close(fd)


def test_a_source_that_keeps_sending_is_not_cut():
    import threading
    import time
    client_r, client_w = os.pipe()
    sink_r, sink_w = os.pipe()

    def client():
        for _n in range(6):
            os.write(client_w, b'y' * 1000)
            time.sleep(0.4)  # under the limit each time; 2.4 s in all, over it
        os.close(client_w)
    writer = threading.Thread(target=client)
    writer.start()
    sent = _mover.relay(io.BufferedReader(_mover.QuietLimit(client_r, 1), _mover.RELAY_CHUNK), open(sink_w, 'wb'))
    writer.join()
    data = b''
    while True:
        chunk = os.read(sink_r, 100000)
        if not chunk:
            break
        data += chunk
    os.close(client_r)
    os.close(sink_r)
    assert sent == 6000 and data == b'y' * 6000
