# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cidrs filter: networks normalised with netaddr, anything else one sentence."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.stratum.storage.plugins.filter.cidrs import FilterModule, cidrs


@pytest.mark.parametrize('value, expected', [
    ('10.0.2.2', ['10.0.2.2/32']),
    (['192.0.2.17/24', '10.0.2.2', '192.0.2.0/24'], ['192.0.2.0/24', '10.0.2.2/32']),
    ([' 2001:db8::1/64 '], ['2001:db8::/64']),
    (['::1'], ['::1/128']),
])
def test_networks_are_normalised(value, expected):
    assert cidrs(value) == expected


@pytest.mark.parametrize('value', [[], ['example.com'], ['10.0.2.0/33'], ['*'], ['10.0.2.2,10.0.0.0/8'],
                                   ['10.0.2.2" command="sh'], [None], {'a': 1}, ['']])
def test_anything_else_is_one_sentence(value):
    with pytest.raises(AnsibleFilterError, match=r'^cidrs: (.* is not a network address such as|give at least one network)'):
        cidrs(value)


@pytest.mark.parametrize('value', [['0.0.0.0/0'], ['10.0.2.2', '::/0'], ['192.0.2.1/0']])
def test_every_address_is_refused(value):
    with pytest.raises(AnsibleFilterError, match=r'^cidrs: .* allows connections from any address; name the networks'):
        cidrs(value)


def test_the_filter_is_registered():
    assert FilterModule().filters()['cidrs'] is cidrs
