# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def qemu_tools():
    """The real qemu-img and qemu-io, for tests that drive them.

    `make test` installs them, so their absence is an error, never a reason to
    skip. Tests on canned output, the planners and the registry do not ask for them.
    """
    for tool in ('qemu-img', 'qemu-io'):
        if shutil.which(tool) is None:
            pytest.fail('%s is not installed; run the tests with `make test`, which installs qemu-utils.' % tool)


@pytest.fixture
def voldir(tmp_path, qemu_tools):
    """A directory for the NFS backend; its tests use the real qemu tools."""
    directory = tmp_path / 'volumes'
    directory.mkdir()
    return directory


@pytest.fixture
def scratch(tmp_path):
    directory = tmp_path / 'scratch'
    directory.mkdir()
    return str(directory)
