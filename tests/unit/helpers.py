# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for unit tests: run a module in-process, drive real qemu-img and qemu-io."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.stratum.storage.plugins.module_utils import _runner


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def _exit_json(self, **kwargs):
    kwargs.setdefault('failed', False)
    raise ModuleExit(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs['failed'] = True
    kwargs['msg'] = msg
    raise ModuleExit(kwargs)


def run_module(module, args, check=False, diff=True, commands=None):
    """Run ``module.main()`` with ``args``; return its result dict.

    ``commands``, when a list, receives the argv of every command the run issued.
    """
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    real_run = _runner.CommandRunner.run

    def recording_run(runner, argv, **kwargs):
        if commands is not None:
            commands.append([os.path.basename(argv[0])] + [str(a) for a in argv[1:]])
        return real_run(runner, argv, **kwargs)

    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', _exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', _fail_json), \
            mock.patch.object(_runner.CommandRunner, 'run', recording_run):
        try:
            module.main()
        except ModuleExit as exc:
            return exc.result
    raise AssertionError('module returned without exit_json or fail_json')


def sh(*argv, cwd=None):
    """Run a real tool; fail the test on a non-zero exit."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True, text=True).stdout


def qemu_write(path, fmt, pattern, offset, length='64k'):
    sh('qemu-io', '-f', fmt, '-c', 'write -P 0x%02x %s %s' % (pattern, offset, length), path)


def image_digest(path, fmt, scratch):
    """SHA-256 of an image's full guest-visible content, read through its backing chain."""
    out = os.path.join(scratch, 'digest.raw')
    sh('qemu-img', 'convert', '-f', fmt, '-O', 'raw', path, out)
    with open(out, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    os.unlink(out)
    return digest


def tree_state(directory):
    """Every file in ``directory`` with its content digest and mode: what "nothing changed" compares."""
    state = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        info = os.lstat(path)
        if os.path.islink(path):
            state[entry] = ('link', os.readlink(path))
            continue
        with open(path, 'rb') as handle:
            state[entry] = (hashlib.sha256(handle.read()).hexdigest(), info.st_mode)
    return state


def read_info(directory, volume):
    with open(os.path.join(directory, 'volume-%s.info' % volume)) as handle:
        return json.load(handle)


def nfs_args(directory, **extra):
    args = {'backend': 'nfs', 'nfs': {'path': str(directory)}}
    args.update(extra)
    return args


class CannedHost:
    """Stands in for a host's storage commands: answers from canned output, records every argv.

    ``answers`` maps a command name (``lvs``) to a function of the argv that
    returns ``(rc, stdout, stderr)``. A command without an answer fails the test,
    so a test also proves which commands a run did not issue.
    """

    def __init__(self, **answers):
        self.answers = answers
        self.commands = []

    def run_command(self, module, argv, **kwargs):
        name = os.path.basename(argv[0])
        self.commands.append([name] + [str(a) for a in argv[1:]])
        if name not in self.answers:
            raise AssertionError('unexpected command %r' % (argv,))
        return self.answers[name](argv)

    def names(self):
        return [argv[0] for argv in self.commands]


def run_canned(module, args, host, check=False, diff=True):
    """Run ``module`` with its commands answered by ``host`` (a ``CannedHost``)."""
    def run_command(self, argv, **kwargs):
        return host.run_command(self, argv, **kwargs)

    with mock.patch.object(basic.AnsibleModule, 'run_command', run_command), \
            mock.patch.object(basic.AnsibleModule, 'get_bin_path', lambda self, name, **kw: '/sbin/' + name):
        return run_module(module, args, check=check, diff=diff)
