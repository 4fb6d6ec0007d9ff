# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test hosts: Debian 12 virtual machines with real LVM, OpenZFS and kernel NFS.

    testhost.py build          build the image (or reuse the cached one)
    testhost.py up [--hosts N] boot N hosts, wait for SSH, write .testhost/inventory.yml
    testhost.py down           stop every host started from this checkout, by pid
    testhost.py status         show what runs

The image is built from Debian's packages with debootstrap and cached outside the
checkout, keyed on a hash of its recipe (this file's RECIPE_VERSION, the package
list and provision.sh). Each host boots the cached kernel and a copy-on-write
overlay of the cached root file system, so every boot starts from the same state.
Networking is QEMU user mode only: each host's SSH and NFS ports are forwarded
from 127.0.0.1, and a host reaches its peers through those forwards at 10.0.2.2.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
STATE = CHECKOUT / '.testhost'
RUN = STATE / 'run'
KEY = STATE / 'id_ed25519'
INVENTORY = STATE / 'inventory.yml'

RECIPE_VERSION = '1'
SUITE = 'bookworm'
BASE_PACKAGES = [
    'systemd-sysv', 'udev', 'kmod', 'iproute2', 'procps', 'e2fsprogs', 'openssh-server', 'openssh-client',
    'python3', 'lvm2', 'thin-provisioning-tools', 'nfs-kernel-server', 'qemu-utils',
]
HOST_PACKAGES = {  # command -> Debian package, needed on this machine
    'debootstrap': 'debootstrap', 'qemu-system-x86_64': 'qemu-system-x86', 'qemu-img': 'qemu-utils',
    'mkfs.ext4': 'e2fsprogs', 'ssh': 'openssh-client', 'ssh-keygen': 'openssh-client',
}
IMAGE_SIZE = '4G'
EXTRA_DISKS = 2
EXTRA_DISK_SIZE = '2G'
MEMORY_MB = 2048
CPUS = int(os.environ.get('STRATUM_TESTHOST_CPUS') or 1)  # vCPUs per host (see docs/testhosts.md)
SSH_TIMEOUT = 600
BOOT_TIMEOUT = 240  # a first boot that takes longer is retried once (a TCG boot takes about 45 s)
KVM_PROBE_TIMEOUT = 90
KVM_CONSOLE_TIMEOUT = 20  # seconds a KVM guest may stay silent before the probe gives up
KVM_DEVICE = '/dev/kvm'
PEER_ADDRESS = '10.0.2.2'  # QEMU user-mode networking's address of this machine's loopback


class HarnessError(Exception):
    """A step that failed; the message says why."""


def log(message: str) -> None:
    print('testhost: %s' % message, flush=True)


def run(argv: list, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(a) for a in argv], check=check, **kwargs)
    except subprocess.CalledProcessError as exc:
        output = ''
        if exc.stderr:
            output = exc.stderr if isinstance(exc.stderr, str) else exc.stderr.decode(errors='replace')
        detail = (': ' + output.strip()[-2000:]) if output else ''
        command = ' '.join(str(a) for a in argv[:3])
        raise HarnessError('%s failed with exit code %d%s' % (command, exc.returncode, detail))


def cache_root() -> Path:
    base = os.environ.get('STRATUM_TESTHOST_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'stratum-storage', 'testhost')
    return Path(base)


def recipe_hash() -> str:
    digest = hashlib.sha256()
    digest.update(('%s\n%s\n%s\n%s\n' % (RECIPE_VERSION, SUITE, ','.join(BASE_PACKAGES), IMAGE_SIZE)).encode())
    digest.update((HERE / 'provision.sh').read_bytes())
    return digest.hexdigest()[:16]


def image_dir() -> Path:
    return cache_root() / recipe_hash()


# -- this machine's tools ----------------------------------------------------------------

def ensure_host_tools() -> None:
    missing = sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which('apt-get') is None:
        raise HarnessError('missing Debian packages %s; install them as root with: apt-get install %s'
                           % (', '.join(missing), ' '.join(missing)))
    log('installing %s' % ', '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    run(['apt-get', 'update', '-qq'], env=env, capture_output=True, text=True)
    run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends'] + missing, env=env,
        capture_output=True, text=True)


# -- image -------------------------------------------------------------------------------

def apt_sources_with_contrib() -> str:
    """This machine's Debian sources for the suite, with the contrib component added."""
    stanzas = []
    sources_dir = Path('/etc/apt/sources.list.d')
    for path in sorted(sources_dir.glob('*.sources')):
        for stanza in path.read_text().split('\n\n'):
            fields = [line for line in stanza.splitlines() if line and not line.startswith('#')]
            if not any(line.startswith('Suites:') and SUITE in line for line in fields):
                continue
            fixed = []
            for line in fields:
                if line.startswith('Components:') and ' contrib' not in line:
                    line += ' contrib'
                fixed.append(line)
            stanzas.append('\n'.join(fixed))
    lines = []
    legacy = Path('/etc/apt/sources.list')
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if len(words) >= 4 and words[0] == 'deb' and any(w.startswith(SUITE) for w in words[2:3]):
                if 'contrib' not in words:
                    words.append('contrib')
                lines.append(' '.join(words))
    if not stanzas and not lines:
        raise HarnessError('this machine has no Debian %s apt sources to give the image' % SUITE)
    return ('\n\n'.join(stanzas) + '\n') if stanzas else ('\n'.join(lines) + '\n')


@contextlib.contextmanager
def chroot_mounts(tree: Path):
    mounted = []
    try:
        for fstype, source, target in (('proc', 'proc', 'proc'), ('sysfs', 'sys', 'sys'),
                                       ('devtmpfs', 'udev', 'dev'), ('devpts', 'devpts', 'dev/pts')):
            path = tree / target
            path.mkdir(parents=True, exist_ok=True)
            run(['mount', '-t', fstype, source, path])
            mounted.append(path)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(['umount', '-l', str(path)], check=False)


def build_image(force: bool = False) -> Path:
    target = image_dir()
    if (target / 'ready').exists() and not force:
        log('image %s is cached at %s' % (recipe_hash(), target))
        record_stage('test-host image (cached)', 0)
        return target
    if os.geteuid() != 0:
        raise HarnessError('building the test-host image needs root (debootstrap, chroot, mount)')
    ensure_host_tools()
    started = time.monotonic()
    cache_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='build-', dir=str(cache_root())))
    tree = work / 'tree'
    build_log = work / 'build.log'
    log('building image %s in %s (log: %s)' % (recipe_hash(), work, build_log))
    try:
        with open(build_log, 'w') as out:
            step = time.monotonic()
            run(['debootstrap', '--variant=minbase', '--include=' + ','.join(BASE_PACKAGES), SUITE, tree],
                stdout=out, stderr=subprocess.STDOUT)
            log('debootstrap: %.0f s' % (time.monotonic() - step))
            for stale in (tree / 'etc/apt/sources.list',):
                if stale.exists():
                    stale.unlink()
            (tree / 'etc/apt/sources.list.d').mkdir(parents=True, exist_ok=True)
            (tree / 'etc/apt/sources.list.d/debian.sources').write_text(apt_sources_with_contrib())
            shutil.copy(HERE / 'provision.sh', tree / 'root/provision.sh')
            step = time.monotonic()
            with chroot_mounts(tree):
                run(['chroot', tree, '/bin/sh', '/root/provision.sh'], stdout=out, stderr=subprocess.STDOUT)
            log('kernel, ZFS module and configuration: %.0f s' % (time.monotonic() - step))
            (tree / 'root/provision.sh').unlink()
            kernels = sorted((tree / 'boot').glob('vmlinuz-*'))
            initrds = sorted((tree / 'boot').glob('initrd.img-*'))
            if not kernels or not initrds:
                raise HarnessError('the image has no kernel or initrd in /boot')
            shutil.copy(kernels[-1], work / 'vmlinuz')
            shutil.copy(initrds[-1], work / 'initrd.img')
            step = time.monotonic()
            run(['mkfs.ext4', '-q', '-F', '-L', 'root', '-d', tree, work / 'root.img', IMAGE_SIZE],
                stdout=out, stderr=subprocess.STDOUT)
            log('root file system image: %.0f s' % (time.monotonic() - step))
        shutil.rmtree(tree)
        (work / 'recipe.json').write_text(json.dumps({'hash': recipe_hash(), 'suite': SUITE,
                                                      'packages': BASE_PACKAGES}, indent=1))
        (work / 'ready').write_text('%.0f\n' % (time.monotonic() - started))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        record_stage('test-host image build', time.monotonic() - started, 'FAILED')
        log('image build failed; last lines of %s:' % build_log)
        with contextlib.suppress(OSError):
            print(''.join(open(build_log, errors='replace').readlines()[-40:]), file=sys.stderr)
        with contextlib.suppress(OSError):
            if tree.exists():
                subprocess.run(['umount', '-R', '-l', str(tree / 'proc'), str(tree / 'sys'), str(tree / 'dev')],
                               check=False, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
        raise
    log('image build took %.0f s' % (time.monotonic() - started))
    record_stage('test-host image build', time.monotonic() - started)
    return target


# -- hosts -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def ensure_key() -> str:
    STATE.mkdir(exist_ok=True)
    if not KEY.exists():
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'stratum-testhost', '-f', KEY])
    return KEY.with_suffix('.pub').read_text().strip()


def accelerator(image: Path) -> str:
    """KVM where a probe boot showed it works here, else TCG; the answer is cached per machine.

    Any failure of the probe (QEMU refusing to start under KVM, a guest that prints
    nothing, a guest that does not answer SSH in time) means TCG: the probe never fails
    the caller.
    """
    forced = os.environ.get('STRATUM_TESTHOST_ACCEL')
    if forced in ('kvm', 'tcg'):
        return forced
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return 'tcg'
    probe = cache_root() / ('kvm-probe-%s' % image.name)
    if probe.exists():
        return probe.read_text().strip()
    log('probing whether KVM boots the test-host kernel here (up to %d s)' % KVM_PROBE_TIMEOUT)
    started = time.monotonic()
    result, reason = 'tcg', ''
    try:
        hosts = start_hosts(image, 1, 'kvm', prefix='probe', quiet=False)
        wait_for_console(hosts[0], KVM_CONSOLE_TIMEOUT)
        wait_for_ssh(hosts, KVM_PROBE_TIMEOUT)
        result = 'kvm'
    except (HarnessError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        try:
            stop_hosts()
        except HarnessError as exc:
            log('after the KVM probe: %s' % exc)
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(result + '\n')
        record_stage('KVM probe (%s)' % result, time.monotonic() - started)
    log('accelerator: %s%s' % (result, (' (KVM: %s)' % reason) if reason else ''))
    return result


def wait_for_console(host: dict, timeout: float) -> None:
    """A kernel that runs prints to the serial console within seconds; one that hangs prints nothing."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not alive(host['pid']):
            raise HarnessError('%s (pid %d) exited while booting' % (host['name'], host['pid']))
        with contextlib.suppress(OSError):
            if os.path.getsize(host['serial']) > 0:
                return
        time.sleep(0.5)
    raise HarnessError('%s printed nothing on its serial console within %d s' % (host['name'], timeout))


def record_stage(name: str, seconds: float, status: str = 'ok') -> None:
    """Add a row to the stage table of `make test` (the file named by STRATUM_STAGE_TIMES)."""
    table = os.environ.get('STRATUM_STAGE_TIMES')
    if table:
        with open(table, 'a') as out:
            out.write('%s\t%.0f\t%s\n' % (name, seconds, status))


def ssh_argv(port: int) -> list[str]:
    return ['ssh', '-q', '-i', str(KEY), '-p', str(port), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5',
            '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', 'root@127.0.0.1']


def start_hosts(image: Path, count: int, accel: str, prefix: str = 'testhost', quiet: bool = True) -> list[dict]:
    pubkey = ensure_key()
    RUN.mkdir(parents=True, exist_ok=True)
    hosts = []
    for index in range(1, count + 1):
        name = '%s%d' % (prefix, index)
        root = RUN / ('%s-root.qcow2' % name)
        run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image / 'root.img', root])
        drives = ['-drive', 'file=%s,if=virtio,format=qcow2,cache=unsafe' % root]
        for disk in range(EXTRA_DISKS):
            path = RUN / ('%s-disk%d.qcow2' % (name, disk + 1))
            run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, EXTRA_DISK_SIZE])
            drives += ['-drive', 'file=%s,if=virtio,format=qcow2,cache=unsafe' % path]
        host = {'name': name, 'ssh_port': free_port(), 'nfs_port': free_port(),
                'serial': str(RUN / ('%s.serial.log' % name)), 'pidfile': str(RUN / ('%s.pid' % name))}
        # noinit_itable: the root file system is a throwaway overlay, so the kernel need not
        # zero its inode tables in the background after every boot (ext4lazyinit).
        cmdline = 'console=ttyS0 root=/dev/vda rw rootflags=noinit_itable %sstratum.hostname=%s stratum.sshkey=%s' % (
            'quiet ' if quiet else '', name, base64.b64encode(pubkey.encode()).decode())
        accel_args = ['-accel', 'kvm', '-cpu', 'host'] if accel == 'kvm' else ['-accel', 'tcg,thread=multi']
        argv = (['qemu-system-x86_64', '-name', name] + accel_args +
                ['-smp', str(CPUS), '-m', str(MEMORY_MB), '-nodefaults', '-display', 'none',
                 '-serial', 'file:%s' % host['serial'], '-kernel', image / 'vmlinuz', '-initrd', image / 'initrd.img',
                 '-append', cmdline] + drives +
                ['-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:2049'
                 % (host['ssh_port'], host['nfs_port']),
                 '-device', 'virtio-net-pci,netdev=net0',
                 '-pidfile', host['pidfile'], '-daemonize'])
        run(argv, capture_output=True, text=True)
        host['pid'] = int(Path(host['pidfile']).read_text().strip())
        hosts.append(host)
        log('%s started (pid %d, ssh 127.0.0.1:%d, nfs 127.0.0.1:%d, %s)'
            % (name, host['pid'], host['ssh_port'], host['nfs_port'], accel))
    (RUN / 'hosts.json').write_text(json.dumps(hosts, indent=1))
    return hosts


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if 'qemu' not in Path('/proc/%d/cmdline' % pid).read_text(errors='replace'):
            return False
    return True


def wait_for_ssh(hosts: list[dict], timeout: float) -> None:
    started = time.monotonic()
    pending = list(hosts)
    while pending:
        for host in list(pending):
            if not alive(host['pid']):
                raise HarnessError('%s (pid %d) exited while booting; serial log:\n%s'
                                   % (host['name'], host['pid'], tail(host['serial'])))
            if subprocess.run(ssh_argv(host['ssh_port']) + ['true'], capture_output=True, check=False).returncode == 0:
                log('%s answers SSH after %.0f s' % (host['name'], time.monotonic() - started))
                pending.remove(host)
        if pending and time.monotonic() - started > timeout:
            raise HarnessError('%s did not answer SSH within %d s; serial log:\n%s'
                               % (pending[0]['name'], timeout, tail(pending[0]['serial'])))
        if pending:
            time.sleep(2)


def tail(path: str, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return ''.join(open(path, errors='replace').readlines()[-lines:])
    return '(no serial log)'


def write_inventory(hosts: list[dict]) -> None:
    lines = ['# Written by tests/testhost/testhost.py; removed by `make testhost-down`.', 'all:', '  vars:',
             '    ansible_user: root',
             '    ansible_ssh_private_key_file: %s' % KEY,
             '    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
             '    ansible_ssh_pipelining: true',
             '    ansible_ssh_args: -o ControlMaster=auto -o ControlPersist=900s',
             '    ansible_ssh_use_tty: false',
             '    ansible_python_interpreter: /usr/bin/python3',
             '    testhost_disks: [/dev/vdb, /dev/vdc]',
             '    testhost_peer_address: %s' % PEER_ADDRESS,
             '  hosts:']
    for host in hosts:
        lines += ['    %s:' % host['name'],
                  '      ansible_host: 127.0.0.1',
                  '      ansible_port: %d' % host['ssh_port'],
                  '      testhost_nfs_port: %d' % host['nfs_port']]
        peers = [peer for peer in hosts if peer is not host]
        if peers:
            lines.append('      testhost_peers:')
            for peer in peers:
                lines += ['        - name: %s' % peer['name'],
                          '          address: %s' % PEER_ADDRESS,
                          '          ssh_port: %d' % peer['ssh_port'],
                          '          nfs_port: %d' % peer['nfs_port']]
    INVENTORY.write_text('\n'.join(lines) + '\n')


def stop_hosts() -> int:
    """Stop every host recorded in the run directory, by pid; return how many were running."""
    stopped = 0
    for pidfile in sorted(RUN.glob('*.pid')) if RUN.exists() else []:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
                stopped += 1
                deadline = time.monotonic() + 20
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(0.5)
                if alive(pid):
                    raise HarnessError('QEMU pid %d did not stop' % pid)
    leftovers = our_qemu_pids()
    if leftovers:
        raise HarnessError('QEMU processes of this checkout are still running: %s' % leftovers)
    if RUN.exists():
        shutil.rmtree(RUN)
    with contextlib.suppress(FileNotFoundError):
        INVENTORY.unlink()
    return stopped


def our_qemu_pids() -> list[int]:
    """Running QEMU processes whose command line names this checkout's run directory."""
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / 'cmdline').read_bytes().decode(errors='replace')
            if 'qemu-system' in cmdline and str(RUN) in cmdline:
                found.append(int(entry.name))
    return found


# -- commands ----------------------------------------------------------------------------

def cmd_build(args) -> None:
    build_image(force=args.force)


def cmd_up(args) -> None:
    started = time.monotonic()
    stop_hosts()
    ensure_host_tools()
    image = build_image()
    accel = accelerator(image)
    boot = time.monotonic()
    try:
        hosts = start_hosts(image, args.hosts, accel)
        try:
            wait_for_ssh(hosts, BOOT_TIMEOUT)
        except HarnessError as exc:
            # A guest under software emulation can hang while it boots (soft lockups on an
            # overloaded machine); a second boot from the same image is a fresh start.
            log('%s; booting the hosts once more' % str(exc).splitlines()[0])
            stop_hosts()
            hosts = start_hosts(image, args.hosts, accel)
            wait_for_ssh(hosts, SSH_TIMEOUT)
        write_inventory(hosts)
    except BaseException:
        record_stage('boot %d host(s), %s' % (args.hosts, accel), time.monotonic() - boot, 'FAILED')
        stop_hosts()
        raise
    record_stage('boot %d host(s), %s' % (args.hosts, accel), time.monotonic() - boot)
    log('boot to SSH: %.0f s; whole start: %.0f s; inventory: %s'
        % (time.monotonic() - boot, time.monotonic() - started, INVENTORY))


def cmd_down(args) -> None:
    stopped = stop_hosts()
    log('stopped %d host(s)' % stopped)


def cmd_status(args) -> None:
    hosts = json.loads((RUN / 'hosts.json').read_text()) if (RUN / 'hosts.json').exists() else []
    for host in hosts:
        state = 'running' if alive(host['pid']) else 'gone'
        print('%s pid %d %s ssh 127.0.0.1:%d' % (host['name'], host['pid'], state, host['ssh_port']))
    print('image %s: %s' % (recipe_hash(), 'cached' if (image_dir() / 'ready').exists() else 'not built'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    build = sub.add_parser('build')
    build.add_argument('--force', action='store_true', help='rebuild even when the image is cached')
    build.set_defaults(func=cmd_build)
    up = sub.add_parser('up')
    up.add_argument('--hosts', type=int, default=1, choices=(1, 2, 3, 4))
    up.set_defaults(func=cmd_up)
    sub.add_parser('down').set_defaults(func=cmd_down)
    sub.add_parser('status').set_defaults(func=cmd_status)
    args = parser.parse_args()
    # Stopped by a signal (make test stops a background image build when it fails),
    # run the clean-up of every step: unmount the build tree, stop started hosts.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        args.func(args)
    except HarnessError as exc:
        print('testhost: FAILED: %s' % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
