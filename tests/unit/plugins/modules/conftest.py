# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the backup tests: a source volume directory, a repository and a directory to restore into."""

from __future__ import annotations

import pytest

from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import Source


@pytest.fixture
def source(voldir, scratch):
    return Source(voldir, scratch)


@pytest.fixture
def repo(tmp_path):
    directory = tmp_path / 'repository'
    directory.mkdir()
    return str(directory)


@pytest.fixture
def target(tmp_path):
    directory = tmp_path / 'restored'
    directory.mkdir()
    return str(directory)
