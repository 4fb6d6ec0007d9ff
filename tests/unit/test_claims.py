# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection claims about itself matches what it has and what is tested."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandRunner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*path):
    with open(os.path.join(ROOT, *path)) as handle:
        return handle.read()


def test_required_ansible_core_is_the_tested_one():
    required = yaml.safe_load(read('meta', 'runtime.yml'))['requires_ansible']
    tested = re.search(r'^ansible-core>=([0-9.]+),', read('requirements', 'controller.txt'), re.M).group(1)
    assert required == '>=%s' % tested
    minor = '.'.join(tested.split('.')[:2])
    assert 'ansible-core %s or newer' % minor in read('README.md')


def test_galaxy_promises_only_what_exists():
    galaxy = yaml.safe_load(read('galaxy.yml'))
    text = ' '.join([galaxy['description']] + galaxy.get('tags', [])).lower()
    for word, where in (('backup', 'roles/backup'), ('replication', 'roles/replication')):
        assert word not in text or os.path.isdir(os.path.join(ROOT, where)), word


def test_the_galaxy_version_is_the_newest_release():
    galaxy = yaml.safe_load(read('galaxy.yml'))
    releases = yaml.safe_load(read('changelogs', 'changelog.yaml'))['releases']
    newest = max(releases, key=lambda v: tuple(int(p) for p in v.split('.')))
    assert galaxy['version'] == newest
    assert re.search(r'^v%s$' % re.escape(newest), read('CHANGELOG.rst'), re.M)
    for key in ('repository', 'documentation', 'issues'):
        assert galaxy[key].startswith('https://')


def test_changelog_output_is_documented_as_made_by_a_release():
    outputs = [o['file'] for o in yaml.safe_load(read('changelogs', 'config.yaml'))['output']]
    assert outputs
    development = read('docs', 'development.md')
    assert 'antsibull-changelog release' in development
    for output in outputs:
        assert output in development


def test_the_runner_keeps_no_command_history():
    assert not hasattr(CommandRunner(module=None), 'history')


STAGES = re.findall(r'^stage "([^"]+)"', read('scripts', 'run-tests'), re.M)


@pytest.mark.parametrize('stage', STAGES)
def test_development_guide_lists_every_stage(stage):
    assert '| %s |' % stage in read('docs', 'development.md')


def test_development_guide_names_every_test_directory_and_integration_target():
    development = read('docs', 'development.md')
    assert STAGES and 'managed-host Python 3.8 check' in STAGES
    tests = sorted(d for d in os.listdir(os.path.join(ROOT, 'tests')) if not d.startswith(('.', '_', 'output')))
    targets = sorted(os.listdir(os.path.join(ROOT, 'tests', 'integration', 'targets')))
    assert targets
    missing = [d for d in tests if 'tests/%s/' % d not in development]
    missing += [t for t in targets if '`%s`' % t not in development]
    assert missing == []
