# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible.module_utils.common.text.formatters import human_to_bytes
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name
from ansible_collections.stratum.storage.plugins.module_utils._sizes import parse_size, round_up

SIZES = [
    (1048576, 1048576),
    ('1048576', 1048576),
    ('512B', 512),
    ('64K', 64 << 10),
    ('64KB', 64 << 10),
    ('64KiB', 64 << 10),
    ('10M', 10 << 20),
    ('10MiB', 10 << 20),
    ('10 MB', 10 << 20),
    ('1G', 1 << 30),
    ('1.5G', 3 << 29),
    ('2T', 2 << 40),
    ('1P', 1 << 50),
]


@pytest.mark.parametrize('value, expected', SIZES)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize('value', ['10M', '10MB', '1G', '64K', '2T', '512B'])
def test_parse_size_reads_units_as_human_to_bytes_does(value):
    assert parse_size(value) == human_to_bytes(value)


@pytest.mark.parametrize('value', [0, -1, '0', '', 'ten', '10X', '10%', '1.0000001K', True, [1], '10 G B', '-5M'])
def test_parse_size_refuses(value):
    with pytest.raises(InvalidInputError) as err:
        parse_size(value)
    assert err.value.message.count('.') >= 1 and '\n' not in err.value.message


@pytest.mark.parametrize('size, unit, expected', [(1, 512, 512), (512, 512, 512), (513, 512, 1024),
                                                  (64 << 20, 4 << 20, 64 << 20), ((64 << 20) + 1, 4 << 20, 68 << 20)])
def test_round_up(size, unit, expected):
    assert round_up(size, unit) == expected


@pytest.mark.parametrize('name', ['a', 'A', '0', 'db01-data', 'x_y', 'a' * 128,
                                  '7c1f7e0a-2b6b-4f39-9a7e-3a1f3bde0c11'])
def test_valid_names(name):
    assert validate_name(name, 'volume') == name


@pytest.mark.parametrize('name', ['', '-x', '_x', 'a' * 129, 'a;b', '../x', 'a b', 'a/b', 'a@b', 'a.b', 'ä', None, 5,
                                  'a\nb'])
def test_invalid_names(name):
    with pytest.raises(InvalidInputError) as err:
        validate_name(name, 'volume')
    assert err.value.message.startswith('Volume name')
