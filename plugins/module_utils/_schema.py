# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The uniform return schema shared by every backend."""

from __future__ import annotations

import datetime

STATUSES = ('creating', 'available', 'pending_delete', 'inbound', 'error')


def iso_utc(timestamp):
    """Seconds since the epoch as ISO 8601 UTC (``2026-01-02T03:04:05Z``), or None."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def now_utc():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class _Record:
    """A resource as the modules return it; every key is always present."""

    KEYS = ()

    def __init__(self, **values):
        unknown = set(values) - set(self.KEYS)
        if unknown:
            raise TypeError('unknown keys %s' % sorted(unknown))
        for key in self.KEYS:
            setattr(self, key, values.get(key))
        if self.status not in STATUSES:
            raise ValueError('status %r is not one of %s' % (self.status, STATUSES))
        if self.details is None:
            self.details = {}

    def to_dict(self):
        return dict((key, getattr(self, key)) for key in self.KEYS)

    def replace(self, **values):
        data = self.to_dict()
        data.update(values)
        return type(self)(**data)

    def __repr__(self):
        return '%s(%r)' % (type(self).__name__, self.to_dict())


class Volume(_Record):
    KEYS = ('name', 'backend', 'status', 'size', 'created', 'origin', 'details')


class Snapshot(_Record):
    KEYS = ('name', 'volume', 'backend', 'status', 'size', 'created', 'parent', 'details')
