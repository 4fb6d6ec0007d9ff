# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface that every backend implements.

A backend reads and changes storage. It never calls ``exit_json`` and never
looks at check mode: the manager decides what to change and whether to apply.
"""

from __future__ import annotations

import abc
from contextlib import contextmanager


class Action:
    """One backend call of a plan, with the volumes it rewrites or reads (checked first)."""

    def __init__(self, verb, description, rewrites=(), reads=(), **kwargs):
        self.verb = verb
        self.description = description
        self.checks = list(rewrites) + list(reads)
        self.kwargs = kwargs

    def __repr__(self):
        return 'Action(%s, %r)' % (self.verb, self.kwargs)


class Backend(abc.ABC):
    """Volumes and snapshots on one storage system."""

    #: the value of the ``backend`` option that selects this class
    name = None
    #: the ``format`` values this backend stores
    formats = ('raw',)
    #: True when a deleted snapshot may linger as ``pending_delete`` until the storage
    #: system removes it by itself; deleting it again is then a no-op
    deferred_delete = False

    def __init__(self, runner, config):
        self.runner = runner
        self.config = config

    # -- connection -----------------------------------------------------------------

    def connect(self, apply):
        """Make the backend reachable; return a list of what was (or would be) done.

        With ``apply`` false nothing may change; a backend that cannot be read
        without a change raises ``StorageError``.
        """
        return []

    @contextmanager
    def lock(self, volumes):
        """Exclude concurrent writers of ``volumes`` for the ``with`` body."""
        yield

    # -- reading ----------------------------------------------------------------------

    @abc.abstractmethod
    def allocation_unit(self, volume=None):
        """Bytes the backend allocates ``volume`` (a ``Volume`` or None for a new one) in.

        Sizes are rounded up to it before they are compared.
        """

    @abc.abstractmethod
    def list_volumes(self, name=None):
        """Return ``Volume`` records, of one volume or of all; one backend read."""

    @abc.abstractmethod
    def list_snapshots(self, volume=None):
        """Return ``Snapshot`` records in chain order, of one volume or of all."""

    @abc.abstractmethod
    def read_volume(self, name):
        """Return ``(Volume or None, [Snapshot, ...])`` of one volume from one backend read."""

    def validate_volume_name(self, name):
        """Refuse volume names that are valid in general but not on this backend."""

    def validate_snapshot_name(self, name, volume=None):
        """Refuse snapshot names that are valid in general but not on this backend."""

    def plan_settings(self, record):
        """Return ``(actions, predicted)`` that bring ``record`` (a volume or snapshot) to the backend options.

        Settings are what the backend dict asks of every volume besides its size
        (ZFS properties, an LV that must be active); the default has none.
        """
        return [], record

    def predict_deleted_snapshot(self, snapshot):
        """Return what a delete of ``snapshot`` leaves listed: None, or a ``pending_delete`` record."""
        return None

    # -- preflight checks (read only) -------------------------------------------------

    def check_rewritable(self, volume, verb=None):
        """Raise unless ``volume`` (a ``Volume``) may be rewritten now by ``verb``."""

    # -- changes ----------------------------------------------------------------------

    @abc.abstractmethod
    def create_volume(self, name, size, fmt):
        """Create an empty volume of ``size`` bytes (already rounded)."""

    @abc.abstractmethod
    def clone_volume(self, name, source, snapshot, size, fmt):
        """Create ``name`` holding the data of ``source`` (at ``snapshot`` if given)."""

    @abc.abstractmethod
    def extend_volume(self, name, size):
        """Grow ``name`` to ``size`` bytes."""

    @abc.abstractmethod
    def delete_volume(self, name):
        """Delete ``name`` and every snapshot of it."""

    @abc.abstractmethod
    def create_snapshot(self, volume, name):
        """Take snapshot ``name`` of ``volume``."""

    @abc.abstractmethod
    def delete_snapshot(self, volume, name):
        """Delete snapshot ``name`` of ``volume``, keeping every other point in time."""


class ListingBackend(Backend):
    """A backend that reads everything from one listing command.

    Subclasses implement ``records``; reading one volume, all volumes or all
    snapshots is then one listing each. The last listing is kept until the next
    change (``forget``), so a change applied right after the manager's read under
    the lock does not list again.
    """

    _listing = None

    @abc.abstractmethod
    def list_all(self):
        """Run the listing command; return what ``records`` takes."""

    @abc.abstractmethod
    def records(self, listing, name=None):
        """Return the volumes (by name) and a dict of each one's snapshots in chain order."""

    def listing(self, fresh=True):
        """The listing: a new one, or with ``fresh`` false the last one if no change came since."""
        if fresh or self._listing is None:
            self._listing = self.list_all()
        return self._listing

    def forget(self):
        """Drop the kept listing."""
        self._listing = None

    def change(self, argv, **kwargs):
        """Run a command that changes storage; the kept listing is stale from now on."""
        self.forget()
        return self.runner.run(argv, **kwargs)

    def read_volume(self, name):
        volumes, snapshots = self.records(self.listing(), name)
        if not volumes:
            return None, []
        return volumes[0], snapshots.get(name, [])

    def list_volumes(self, name=None):
        return self.records(self.listing(), name)[0]

    def list_snapshots(self, volume=None):
        snapshots = self.records(self.listing(), volume)[1]
        return [snap for key in sorted(snapshots) for snap in snapshots[key]]


def in_chain_order(found, build):
    """Build a volume's snapshots oldest first, each with the previous one as ``parent``.

    ``found`` holds ``(order key, snapshot name, arguments)``; ``build(*arguments, parent)``
    returns the ``Snapshot``.
    """
    parent, chain = None, []
    for _key, name, arguments in sorted(found, key=lambda item: item[:2]):
        chain.append(build(*arguments, parent))
        parent = name
    return chain
