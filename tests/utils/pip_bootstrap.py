# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its virtual environments without pip and then runs a
bootstrap script from its cache (downloading it when missing) with the wanted
packages as arguments, for example ``--disable-pip-version-check pip==24.2
--no-setuptools --no-wheel``. This script does the same job from what the
machine already has: ``ensurepip`` installs the pip wheel bundled with Python,
which then installs the requested packages from the configured package index.
`make` copies it into ansible-test's cache before running ansible-test.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys


def main():
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    environment = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)  # this sets PIP_CONFIG_FILE=/dev/null in os.environ
    # The install itself uses the machine's pip configuration (index, certificates).
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + args, env=environment)


if __name__ == '__main__':
    main()
