# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``cidrs`` filter: networks validated and normalised with netaddr, for an SSH ``from=`` list.

The documentation is in ``cidrs.yml``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import netaddr
except ImportError:
    netaddr = None


def cidrs(value):
    """Each network of ``value`` (a list, or one string) as ``address/prefix`` with the host bits cleared."""
    if netaddr is None:
        raise AnsibleFilterError('cidrs: the Python package netaddr is not installed on the controller; install it '
                                 'with pip install netaddr.')
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise AnsibleFilterError('cidrs: give at least one network such as 192.0.2.0/24, not %r.' % (value,))
    found = []
    for item in items:
        text = item.strip() if isinstance(item, str) else None
        try:
            if not text or any(c in text for c in ' ,"*?!'):
                raise ValueError(item)
            network = netaddr.IPNetwork(text).cidr
        except (ValueError, TypeError, netaddr.AddrFormatError):
            raise AnsibleFilterError('cidrs: %r is not a network address such as 192.0.2.0/24 or 2001:db8::/32.'
                                     % (item,))
        if network.prefixlen == 0:
            raise AnsibleFilterError('cidrs: %r allows connections from any address; name the networks the source '
                                     'hosts connect from, such as 192.0.2.0/24.' % (item,))
        if str(network) not in found:
            found.append(str(network))
    return found


class FilterModule:
    def filters(self):
        return {'cidrs': cidrs}
