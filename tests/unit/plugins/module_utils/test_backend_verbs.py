# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every call the manager makes on a backend is declared on ``Backend``, and configuration is checked in ``__init__``."""

from __future__ import annotations

import ast
import inspect

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _manager, _planner
from ansible_collections.stratum.storage.plugins.module_utils._backend import Action, Backend, Verb
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS

DECLARED = dict((name, value) for name, value in vars(Backend).items() if not name.startswith('_'))


def parameters(function):
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize('verb', list(Verb), ids=[v.value for v in Verb])
def test_every_verb_is_a_method_declared_on_backend(verb):
    assert verb.value in DECLARED and callable(DECLARED[verb.value]), \
        'Verb %s is not a method of Backend' % verb.value


@pytest.mark.parametrize('name', sorted(BACKENDS))
@pytest.mark.parametrize('verb', list(Verb), ids=[v.value for v in Verb])
def test_every_backend_takes_each_verb_as_declared(name, verb):
    cls = BACKENDS[name].backend
    assert parameters(getattr(cls, verb.value)) == parameters(DECLARED[verb.value])


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_declared_methods_keep_their_signatures(name):
    cls = BACKENDS[name].backend
    assert not cls.__abstractmethods__
    for method, value in DECLARED.items():
        if callable(value):
            assert parameters(getattr(cls, method)) == parameters(value), '%s.%s' % (cls.__name__, method)


def test_an_action_holds_declared_verbs_only():
    with pytest.raises(ValueError):
        Action('rollback', 'roll back volume v', name='v')
    assert Action(Verb.ACTIVATE, 'activate v', volume='v').verb == 'activate'


class Recorder:
    def __init__(self):
        self.calls = []

    def activate(self, volume, snapshot=None):
        self.calls.append(('activate', volume, snapshot))


def test_an_action_calls_its_verb():
    backend = Recorder()
    Action(Verb.ACTIVATE, 'activate v', volume='v').apply(backend)
    assert backend.calls == [('activate', 'v', None)]


@pytest.mark.parametrize('module', [_manager, _planner], ids=['manager', 'planner'])
def test_the_manager_calls_declared_backend_members_only(module):
    tree = ast.parse(inspect.getsource(module))
    used = set(node.attr for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'backend')
    dynamic = [node.lineno for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'getattr']
    assert used - set(DECLARED) == set()
    assert dynamic == [], 'getattr in %s (lines %s)' % (module.__name__, dynamic)
    if module is _manager:
        assert {'read_volume', 'plan_settings', 'predict_volume', 'predict_snapshot', 'lock'} <= used


class NoRunner:
    def run(self, argv, **kwargs):
        raise AssertionError('no command may run: %r' % (argv,))


BAD_CONFIGS = [
    ('lvm', dict(vg='-vg0'), 'LVM volume group name'),
    ('lvm', dict(vg='vg0', thin_pool='a/b'), 'LVM thin pool name'),
    ('lvm', dict(vg='vg0', snapshot_size='lots'), 'lvm.snapshot_size'),
    ('lvm', dict(vg='vg0', snapshot_size='0%'), 'lvm.snapshot_size'),
    ('zfs', dict(parent='/tank'), 'zfs.parent'),
    ('zfs', dict(parent='tank/v', properties={'volsize': '1G'}), 'ZFS property volsize'),
    ('zfs', dict(parent='tank/v', properties={'Bad Name': 'x'}), 'ZFS property name'),
    ('zfs', dict(parent='tank/v', properties={'compression': ['lz4']}), 'ZFS property compression'),
    ('nfs', dict(share='no-colon', mount_point_base='/mnt'), 'NFS share'),
]


@pytest.mark.parametrize('name, config, message', BAD_CONFIGS, ids=['%s-%d' % (c[0], i) for i, c in enumerate(BAD_CONFIGS)])
def test_configuration_is_refused_when_the_backend_is_made(name, config, message):
    with pytest.raises(InvalidInputError) as error:
        BACKENDS[name].backend(NoRunner(), config)
    assert message in error.value.message


@pytest.mark.parametrize('name', ['lvm', 'zfs'])
def test_block_backends_have_nothing_to_connect(name):
    """Their configuration is checked by ``__init__``; ``connect`` is the default, which does nothing."""
    assert 'connect' not in vars(BACKENDS[name].backend)
