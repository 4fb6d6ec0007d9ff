# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module run compiles only the module_utils its work needs.

AnsiballZ runs a module from a zip, so every module_utils it imports is compiled
again at each run (tens of milliseconds each under emulation). Reading and
changing volumes and snapshots moves no data: the data mover, qemu-nbd, the
backup repository and replication are imported only where they are used.
Each case runs in a fresh interpreter, whose ``sys.modules`` holds only what the
case imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.stratum.storage.tests.benchmarks.listing import lvs_output, zfs_output

PREFIX = 'ansible_collections.stratum.storage.plugins.module_utils.'
#: what moves data: none of it is needed to list, create, snapshot or delete
DATA_MOVERS = {'_mover', '_nbd', '_repository', '_replica', '_receiver'}

CASE = r'''
import json, os, sys, tempfile
from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult


class OneAnswer:
    def __init__(self, stdout):
        self.stdout = stdout

    def run(self, argv, **kwargs):
        return CommandResult(argv, 0, self.stdout, '')


name = sys.argv[1]
cls = BACKENDS[name].backend
if name == 'lvm':
    backend = cls(OneAnswer(sys.stdin.read()), {'vg': 'vg0'})
elif name == 'zfs':
    backend = cls(OneAnswer(sys.stdin.read()), {'parent': 'tank/v', 'properties': {}})
else:
    backend = cls(OneAnswer(''), {'path': tempfile.mkdtemp(), 'file_mode': '0660', 'cinder_compatible': False,
                                  'mount_point_base': '/nonexistent', 'share': None, 'mount_options': None})
backend.connect(apply=False)
found = backend.list_snapshots()
print(json.dumps({'listed': len(found),
                  'loaded': sorted(m[len(sys.argv[2]):] for m in sys.modules if m.startswith(sys.argv[2]))}))
'''


def _loaded(backend):
    listing = {'lvm': lambda: lvs_output(volumes=3), 'zfs': lambda: zfs_output(volumes=2, snapshots=4),
               'nfs': lambda: ''}[backend]()  # made here: the generators import both backends
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, '-c', CASE, backend, PREFIX], input=listing, capture_output=True,
                          text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('backend, listed', [('lvm', 6), ('zfs', 4), ('nfs', 0)])
def test_a_listing_imports_no_data_mover(backend, listed):
    found = _loaded(backend)
    assert found['listed'] == listed
    assert '_' + backend in found['loaded']  # the backend itself was imported and used
    assert DATA_MOVERS.isdisjoint(found['loaded']), sorted(DATA_MOVERS & set(found['loaded']))
    others = {'_lvm', '_zfs', '_nfs'} - {'_' + backend}
    assert others.isdisjoint(found['loaded']), sorted(others & set(found['loaded']))


def test_the_receiver_imports_the_planner_only_to_delete():
    """A receive, the receiver's run on every replica, does not compile the planner that only a delete uses."""
    code = ('import json, sys\n'
            'from ansible_collections.stratum.storage.plugins.module_utils import _receiver\n'
            'from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS\n'
            'BACKENDS["zfs"].backend\n'
            'print(json.dumps(sorted(m[len(sys.argv[1]):] for m in sys.modules if m.startswith(sys.argv[1]))))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, '-c', code, PREFIX], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert '_receiver' in loaded and '_mover' in loaded and '_zfs' in loaded
    assert not {'_planner', '_repository', '_nbd'} & set(loaded), loaded
