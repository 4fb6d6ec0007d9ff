# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Name validation, done before any command runs."""

from __future__ import annotations

import re

from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError

NAME_PATTERN = r'[A-Za-z0-9][A-Za-z0-9_-]{0,127}'
NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(value):
    """True when all of ``value`` is a name (``$`` would also match before a trailing newline)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def validate_name(value, what):
    """Return ``value`` when it is a valid volume or snapshot name, else raise."""
    if not is_valid_name(value):
        raise InvalidInputError(
            '%s name %r is invalid: use 1 to 128 letters, digits, "_" or "-", starting with a letter or digit.'
            % (what.capitalize(), value))
    return value
