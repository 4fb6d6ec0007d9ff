# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One registry of backends: the argument spec, the manager and the documentation all agree with it."""

from __future__ import annotations

import importlib

import pytest
import yaml

from ansible_collections.stratum.storage.plugins.doc_fragments import _backend as backend_doc
from ansible_collections.stratum.storage.plugins.module_utils import _argspec, _manager
from ansible_collections.stratum.storage.plugins.module_utils._backend import Backend
from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS
from ansible_collections.stratum.storage.plugins.modules import backup, snapshot, snapshot_info, volume, volume_info

MODULES = {
    'volume': (volume, _argspec.volume_kwargs),
    'snapshot': (snapshot, _argspec.snapshot_kwargs),
    'volume_info': (volume_info, _argspec.volume_info_kwargs),
    'snapshot_info': (snapshot_info, _argspec.snapshot_info_kwargs),
    'backup': (backup, _argspec.backup_kwargs),
}
NAMES = sorted(BACKENDS)
SPEC_KEYS = ('type', 'required', 'default', 'choices', 'elements')


def module_doc(module):
    return yaml.safe_load(module.DOCUMENTATION)


def backend_fragment(name):
    """The documentation of backend ``name``'s own fragment ``_<name>``."""
    package = backend_doc.__name__.rpartition('.')[0]
    return yaml.safe_load(importlib.import_module('%s._%s' % (package, name)).ModuleDocFragment.DOCUMENTATION)


def test_registry_names_its_backend_classes():
    assert NAMES, 'the registry is empty'
    for name, entry in BACKENDS.items():
        assert issubclass(entry.backend, Backend) and entry.backend.name == name
        assert entry.option['type'] == 'dict' and entry.option['options']
    assert _manager.BACKENDS is BACKENDS


def test_documented_choices_are_the_registry():
    documented = yaml.safe_load(backend_doc.ModuleDocFragment.DOCUMENTATION)
    assert documented['options']['backend']['choices'] == NAMES


@pytest.mark.parametrize('module_name', sorted(MODULES))
def test_every_module_documents_and_accepts_every_registered_backend(module_name):
    module, kwargs = MODULES[module_name]
    doc = module_doc(module)
    fragments = doc['extends_documentation_fragment']
    assert 'stratum.storage._backend' in fragments
    listed = sorted(f[len('stratum.storage._'):] for f in fragments
                    if f.startswith('stratum.storage._') and not f.startswith('stratum.storage._backend')
                    and f != 'stratum.storage._repository')
    assert listed == NAMES, 'the backend fragments listed by module %s' % module_name
    assert sorted(n for n in (doc.get('options') or {}) if n in BACKENDS or n == 'backend') == []
    spec = kwargs()['argument_spec']
    assert spec['backend']['choices'] == NAMES
    assert sorted(k for k in spec if k in BACKENDS) == NAMES
    required_if = kwargs()['required_if']
    assert sorted(r[1] for r in required_if if r[0] == 'backend') == NAMES


def _spec_of(doc_option):
    return dict((key, doc_option[key]) for key in SPEC_KEYS if doc_option.get(key) not in (None, False))


@pytest.mark.parametrize('name', NAMES)
def test_backend_fragment_documents_exactly_the_registered_options(name):
    fragment = backend_fragment(name)
    assert sorted(fragment['options']) == [name]
    documented = fragment['options'][name]
    assert documented['type'] == 'dict'
    option = BACKENDS[name].option
    assert sorted(documented['suboptions']) == sorted(option['options'])
    for key, spec in option['options'].items():
        have = _spec_of(documented['suboptions'][key])
        want = dict((k, v) for k, v in spec.items() if k in SPEC_KEYS and v not in (None, False))
        assert have == want, '%s.%s: documented %r, argument spec %r' % (name, key, have, want)
    notes = fragment.get('notes') or []
    assert any('O(backend=%s)' % name in note and 'C(details)' in note for note in notes), \
        'fragment _%s has no note on its details' % name
