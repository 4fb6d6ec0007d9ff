# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Size parsing: every size becomes integer bytes once, at the edge."""

from __future__ import annotations

import re

from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError

_UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50}
_SIZE_RE = re.compile(r'(\d+(?:\.\d+)?)\s*(?:([KMGTP])(iB|B)?|(B))?', re.IGNORECASE)


def parse_size(value, what='size'):
    """Return ``value`` as a positive integer number of bytes.

    Integers are bytes. Strings take an optional K, M, G, T or P, optionally
    followed by ``iB`` or ``B``; all units are binary (``1K == 1KiB == 1024``),
    as Ansible's ``human_to_bytes`` reads them.
    """
    if isinstance(value, bool):
        raise InvalidInputError('%s %r is not a size; give bytes or a string such as 10G.' % (what, value))
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if not match:
            raise InvalidInputError(
                '%s %r is not a size; give bytes or a number with K, M, G, T or P (binary units), such as 10G.'
                % (what, value))
        unit = (match.group(2) or '').upper()
        number = float(match.group(1)) * _UNITS[unit]
        if not number.is_integer():
            raise InvalidInputError('%s %r is not a whole number of bytes.' % (what, value))
        number = int(number)
    else:
        raise InvalidInputError('%s %r is not a size; give bytes or a string such as 10G.' % (what, value))
    if number <= 0:
        raise InvalidInputError('%s %r must be greater than zero.' % (what, value))
    return number


def round_up(size, unit):
    """Round ``size`` up to a multiple of ``unit`` (the backend's allocation unit)."""
    return -(-size // unit) * unit
