# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The single command runner: argv lists only, ``LC_ALL=C``, typed errors."""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.stratum.storage.plugins.module_utils._errors import CommandError, StorageError

C_LOCALE = {'LC_ALL': 'C', 'LANG': 'C', 'LANGUAGE': 'C'}
#: where storage commands live besides ``PATH`` (as ``AnsibleModule.get_bin_path`` searches)
SBIN = ('/sbin', '/usr/sbin', '/usr/local/sbin')


class CommandResult:
    __slots__ = ('argv', 'rc', 'stdout', 'stderr')

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


class CommandRunner:
    """Runs backend commands through ``AnsibleModule.run_command``.

    Every command is an argv list; nothing goes through a shell.
    """

    def __init__(self, module):
        self.module = module
        self._paths = {}

    def binary(self, name):
        """Return the absolute path of ``name`` or raise a one-sentence error."""
        if name not in self._paths:
            path = self.module.get_bin_path(name, required=False)
            if not path:
                raise StorageError('The command %s is not installed on this host.' % name)
            self._paths[name] = path
        return self._paths[name]

    def run(self, argv, cwd=None, check=True, error=None, pass_fds=()):
        """Run ``argv``; raise ``CommandError`` on a non-zero exit when ``check``.

        ``pass_fds`` are descriptors the command inherits (opened as ``/dev/fd/N``).
        """
        if not isinstance(argv, (list, tuple)) or not argv:
            raise TypeError('argv must be a non-empty list')
        argv = [self.binary(argv[0])] + [str(a) for a in argv[1:]]
        extra = {'pass_fds': tuple(pass_fds)} if pass_fds else {}
        rc, out, err = self.module.run_command(argv, cwd=cwd, environ_update=C_LOCALE, check_rc=False, **extra)
        result = CommandResult(argv, rc, out, err)
        if check and rc != 0:
            raise command_error(result, error)
        return result

    def spawn(self, argv, **kwargs):
        """Start ``argv`` for streaming (``subprocess.Popen`` keyword arguments); no shell, ``LC_ALL=C``."""
        return spawn([self.binary(argv[0])] + [str(a) for a in argv[1:]], **kwargs)


class ProcessRunner(CommandRunner):
    """The same runner outside Ansible (the replication receiver): ``subprocess`` directly."""

    def __init__(self):
        super().__init__(None)

    def binary(self, name):
        if name not in self._paths:
            search = os.pathsep.join([os.environ.get('PATH') or os.defpath] + list(SBIN))
            path = shutil.which(name, path=search)
            if not path:
                raise StorageError('The command %s is not installed on this host.' % name)
            self._paths[name] = path
        return self._paths[name]

    def run(self, argv, cwd=None, check=True, error=None, pass_fds=()):
        if not isinstance(argv, (list, tuple)) or not argv:
            raise TypeError('argv must be a non-empty list')
        argv = [self.binary(argv[0])] + [str(a) for a in argv[1:]]
        done = subprocess.run(argv, cwd=cwd, env=dict(os.environ, **C_LOCALE), stdin=subprocess.DEVNULL,
                              capture_output=True, pass_fds=tuple(pass_fds), check=False)
        result = CommandResult(argv, done.returncode, done.stdout.decode('utf-8', 'replace'),
                               done.stderr.decode('utf-8', 'replace'))
        if check and result.rc != 0:
            raise command_error(result, error)
        return result


def spawn(argv, **kwargs):
    """``subprocess.Popen`` of an argv list with ``LC_ALL=C``; an OSError becomes one sentence."""
    try:
        return subprocess.Popen(argv, env=dict(os.environ, **C_LOCALE), **kwargs)
    except OSError as exc:
        raise StorageError('The command %s cannot be started: %s.' % (argv[0], exc.strerror or exc))


def command_error(result, message=None):
    """Build the ``CommandError`` for a failed command."""
    first = (result.stderr or result.stdout or '').strip().splitlines()
    reason = first[-1] if first else 'no output'
    text = message or 'Command %s failed' % ' '.join(result.argv[:2])
    return CommandError('%s: %s (rc=%d).' % (text.rstrip('.'), reason, result.rc),
                        cmd=result.argv, rc=result.rc, stdout=result.stdout, stderr=result.stderr)
