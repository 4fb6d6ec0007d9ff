# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the test-host harness with a fake qemu-system-x86_64: no guest boots.

The fake stands in for QEMU on PATH. Under `-accel kvm` it does what the environment
variable FAKE_KVM says: `fail` exits at once with the error a machine without usable
KVM gives, `silent` starts and prints nothing, `boots` starts and prints on its serial
console. Under TCG it always starts. A started "guest" is a sleeping process whose
command line names QEMU and the run directory, as a real one does.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testhost  # noqa: E402  pylint: disable=wrong-import-position

FAKE_QEMU = r'''#!%(python)s
import json, os, subprocess, sys
argv = sys.argv[1:]
accel = argv[argv.index('-accel') + 1].split(',')[0]
with open(os.environ['FAKE_QEMU_LOG'], 'a') as log:
    log.write(json.dumps({'accel': accel, 'name': argv[argv.index('-name') + 1]}) + '\n')
if accel == 'kvm' and os.environ.get('FAKE_KVM') == 'fail':
    sys.stderr.write('qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n')
    sys.exit(1)
serial = argv[argv.index('-serial') + 1][len('file:'):]
with open(serial, 'w') as console:
    if accel == 'tcg' or os.environ.get('FAKE_KVM') == 'boots':
        console.write('Linux version 6.1.0 (fake)\n')
pidfile = argv[argv.index('-pidfile') + 1]
guest = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', 'qemu-system-fake', pidfile],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
with open(pidfile, 'w') as out:
    out.write('%%d\n' %% guest.pid)
'''


@pytest.fixture(name='harness')
def harness_fixture(tmp_path, monkeypatch):
    """The harness pointed at a temporary checkout state, cache, KVM device and fake QEMU."""
    state = tmp_path / 'state'
    monkeypatch.setattr(testhost, 'STATE', state)
    monkeypatch.setattr(testhost, 'RUN', state / 'run')
    monkeypatch.setattr(testhost, 'KEY', state / 'id_ed25519')
    monkeypatch.setattr(testhost, 'INVENTORY', state / 'inventory.yml')
    kvm = tmp_path / 'kvm'
    kvm.write_text('')
    monkeypatch.setattr(testhost, 'KVM_DEVICE', str(kvm))
    monkeypatch.setattr(testhost, 'KVM_CONSOLE_TIMEOUT', 2)
    monkeypatch.setenv('STRATUM_TESTHOST_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('STRATUM_TESTHOST_ACCEL', raising=False)
    monkeypatch.setenv('STRATUM_STAGE_TIMES', str(tmp_path / 'stages.tsv'))
    image = testhost.image_dir()
    image.mkdir(parents=True)
    for name in ('vmlinuz', 'initrd.img', 'ready'):
        (image / name).write_text('')
    with open(image / 'root.img', 'wb') as root:
        root.truncate(1 << 20)
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    fake = bindir / 'qemu-system-x86_64'
    fake.write_text(FAKE_QEMU % {'python': sys.executable})
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('PATH', '%s%s%s' % (bindir, os.pathsep, os.environ['PATH']))
    monkeypatch.setenv('FAKE_QEMU_LOG', str(tmp_path / 'qemu.log'))
    waited = []

    def fake_wait_for_ssh(hosts, timeout):
        """The probe guest answers only when it 'boots'; the TCG hosts always do."""
        waited.append([host['name'] for host in hosts])
        if hosts[0]['name'].startswith('probe') and os.environ.get('FAKE_KVM') != 'boots':
            raise testhost.HarnessError('%s did not answer SSH within %d s' % (hosts[0]['name'], timeout))

    monkeypatch.setattr(testhost, 'wait_for_ssh', fake_wait_for_ssh)
    yield {'tmp': tmp_path, 'image': image, 'waited': waited}
    testhost.stop_hosts()


def qemu_calls(harness):
    path = harness['tmp'] / 'qemu.log'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize('kvm, expected', [('fail', 'tcg'), ('silent', 'tcg'), ('boots', 'kvm')])
def test_kvm_probe_decides_and_never_fails(harness, monkeypatch, kvm, expected):
    monkeypatch.setenv('FAKE_KVM', kvm)
    assert testhost.accelerator(harness['image']) == expected
    assert (testhost.cache_root() / ('kvm-probe-%s' % harness['image'].name)).read_text().strip() == expected
    assert qemu_calls(harness) == [{'accel': 'kvm', 'name': 'probe1'}]
    assert testhost.our_qemu_pids() == []  # the probe guest is stopped, whatever the answer
    assert 'KVM probe (%s)' % expected in (harness['tmp'] / 'stages.tsv').read_text()


def test_up_goes_on_under_tcg_when_qemu_refuses_kvm(harness, monkeypatch, capsys):
    """The failure a new machine showed: QEMU exits under KVM; `up` must boot the hosts under TCG."""
    monkeypatch.setenv('FAKE_KVM', 'fail')
    testhost.cmd_up(argparse.Namespace(hosts=2))
    assert qemu_calls(harness) == [{'accel': 'kvm', 'name': 'probe1'},
                                   {'accel': 'tcg', 'name': 'testhost1'}, {'accel': 'tcg', 'name': 'testhost2'}]
    assert harness['waited'] == [['testhost1', 'testhost2']]
    assert len(testhost.our_qemu_pids()) == 2
    inventory = testhost.INVENTORY.read_text()
    assert 'testhost1:' in inventory and 'testhost2:' in inventory
    assert 'failed to set MSR' in capsys.readouterr().out
    stages = (harness['tmp'] / 'stages.tsv').read_text()
    assert 'KVM probe (tcg)' in stages and 'boot 2 host(s), tcg' in stages
    # The cached answer is used from then on: no second probe.
    testhost.stop_hosts()
    testhost.cmd_up(argparse.Namespace(hosts=1))
    assert [call['accel'] for call in qemu_calls(harness)][3:] == ['tcg']


def test_down_stops_every_host_by_pid(harness, monkeypatch):
    monkeypatch.setenv('STRATUM_TESTHOST_ACCEL', 'tcg')
    testhost.cmd_up(argparse.Namespace(hosts=2))
    pids = testhost.our_qemu_pids()
    assert len(pids) == 2
    assert testhost.stop_hosts() == 2
    assert testhost.our_qemu_pids() == [] and not testhost.INVENTORY.exists()


def test_a_boot_that_hangs_is_retried_once(harness, monkeypatch):
    monkeypatch.setenv('STRATUM_TESTHOST_ACCEL', 'tcg')
    calls = []

    def hangs_first(hosts, timeout):
        calls.append(timeout)
        if len(calls) == 1:
            raise testhost.HarnessError('testhost1 did not answer SSH within %d s; serial log:\nsoft lockup' % timeout)

    monkeypatch.setattr(testhost, 'wait_for_ssh', hangs_first)
    testhost.cmd_up(argparse.Namespace(hosts=2))
    assert calls == [testhost.BOOT_TIMEOUT, testhost.SSH_TIMEOUT]
    assert [call['name'] for call in qemu_calls(harness)] == ['testhost1', 'testhost2'] * 2
    assert len(testhost.our_qemu_pids()) == 2  # the first two were stopped before the second boot
