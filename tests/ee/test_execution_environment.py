# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment: ansible-builder's context and introspection, and bindep.

`make ee` stages the collection tarball as .build/ee/stratum-storage.tar.gz and runs
these tests with the virtualenv's tools on PATH. No container engine is needed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
STAGED = os.path.join(ROOT, '.build', 'ee', 'stratum-storage.tar.gz')
DEFINITION = os.path.join(ROOT, 'extensions', 'ee', 'execution-environment.yml')
DPKG_NAMES = {'qemu-utils', 'lvm2', 'thin-provisioning-tools', 'zfsutils-linux', 'nfs-common'}


def run(*argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def our_lines(name):
    with open(os.path.join(ROOT, name)) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith('#')]


def our_bindep_lines():
    return our_lines('bindep.txt')


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    where = tmp_path_factory.mktemp('ee') / 'context'
    run(os.path.join(BIN, 'ansible-builder'), 'create', '-f', DEFINITION, '-c', str(where))
    return where


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    where = tmp_path_factory.mktemp('collections')
    run(os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(where), STAGED)
    return where


def test_the_context_carries_the_collection_tarball(context):
    staged = context / '_build' / 'collections' / 'stratum-storage.tar.gz'
    with open(STAGED, 'rb') as ours, open(staged, 'rb') as theirs:
        assert hashlib.sha256(theirs.read()).digest() == hashlib.sha256(ours.read()).digest()
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert requirements == {'collections': [{'name': 'collections/stratum-storage.tar.gz', 'type': 'file'}]}
    with tarfile.open(staged) as tar:
        names = set(tar.getnames())
    assert {'meta/execution-environment.yml', 'bindep.txt', 'requirements.txt', 'roles/backup/meta/argument_specs.yml',
            'playbooks/backup.yml', 'CHANGELOG.rst', 'docs/docsite/extra-docs.yml', 'docs/docsite/rst/user_guide.rst'} <= names


def test_the_containerfile_installs_the_collection_then_what_it_declares(context):
    steps = (context / 'Dockerfile').read_text()
    galaxy = steps.index('ansible-galaxy collection install')
    introspect = steps.index('introspect.py introspect')
    install = steps.index('install-from-bindep')
    assert galaxy < introspect < install
    assert 'ansible-core>=2.19.0,<2.20' in steps and 'ansible-runner==2.4.3' in steps


def test_introspection_lists_exactly_our_dependencies(installed):
    found = yaml.safe_load(run(os.path.join(BIN, 'ansible-builder'), 'introspect', '--sanitize', str(installed)).stdout)
    assert [line.split('  # from collection')[0] for line in found['python']] == our_lines('requirements.txt')
    assert our_lines('requirements.txt') == ['netaddr==1.3.0']
    assert [line.split('  # from collection')[0] for line in found['system']] == our_bindep_lines()
    assert all(line.endswith('# from collection stratum.storage') for line in found['system'])


def test_bindep_gives_an_execution_environment_nothing_and_a_managed_host_the_debian_packages():
    bindep = os.path.join(BIN, 'bindep')
    controller = subprocess.run([bindep, '-f', 'bindep.txt', '-l', 'newline'], cwd=ROOT, capture_output=True, text=True, check=False)
    assert controller.returncode == 0 and controller.stdout.split() == []
    managed = subprocess.run([bindep, '-f', 'bindep.txt', '-l', 'newline', 'managed'], cwd=ROOT, capture_output=True,
                             text=True, check=False)
    assert managed.returncode == 0
    assert set(managed.stdout.split()) <= DPKG_NAMES
    # every Debian package of the profile is named, installed or not
    everything = subprocess.run([bindep, '-f', 'bindep.txt', '--brief', 'managed'], cwd=ROOT, capture_output=True,
                                text=True, check=False)
    assert set(everything.stdout.split()) <= DPKG_NAMES
