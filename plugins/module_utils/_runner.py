# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The single command runner: argv lists only, ``LC_ALL=C``, typed errors."""

from __future__ import annotations

from ansible_collections.stratum.storage.plugins.module_utils._errors import CommandError, StorageError

C_LOCALE = {'LC_ALL': 'C', 'LANG': 'C', 'LANGUAGE': 'C'}


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


def command_error(result, message=None):
    """Build the ``CommandError`` for a failed command."""
    first = (result.stderr or result.stdout or '').strip().splitlines()
    reason = first[-1] if first else 'no output'
    text = message or 'Command %s failed' % ' '.join(result.argv[:2])
    return CommandError('%s: %s (rc=%d).' % (text.rstrip('.'), reason, result.rc),
                        cmd=result.argv, rc=result.rc, stdout=result.stdout, stderr=result.stderr)
