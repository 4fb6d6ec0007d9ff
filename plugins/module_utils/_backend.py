# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface that every backend implements.

A backend reads and changes storage. It never calls ``exit_json`` and never
looks at check mode: the manager decides what to change and whether to apply.
"""

from __future__ import annotations

import abc
import enum
from contextlib import contextmanager
from typing import NamedTuple, Optional


class Verb(str, enum.Enum):
    """Every backend call a plan can hold; each names a method declared on ``Backend``."""

    CREATE_VOLUME = 'create_volume'
    CLONE_VOLUME = 'clone_volume'
    EXTEND_VOLUME = 'extend_volume'
    DELETE_VOLUME = 'delete_volume'
    CREATE_SNAPSHOT = 'create_snapshot'
    DELETE_SNAPSHOT = 'delete_snapshot'
    ACTIVATE = 'activate'
    SET_PROPERTIES = 'set_properties'
    RESTORE_VOLUME = 'restore_volume'


class RepositoryVerb(str, enum.Enum):
    """Every repository call a backup plan can hold; each names a method of ``_repository.Repository``."""

    STORE_BACKUP = 'store_backup'
    VERIFY_BACKUP = 'verify_backup'
    DELETE_BACKUP = 'delete_backup'


class Action:
    """One backend call of a plan, with the volumes it rewrites or reads (checked first).

    ``verb`` is a ``Verb`` (or its value), or a ``RepositoryVerb`` for a plan
    that a repository applies; anything else is refused here, so a plan can only
    hold calls that every backend (or the repository) declares.
    """

    def __init__(self, verb, description, rewrites=(), reads=(), **kwargs):
        self.verb = verb.value if isinstance(verb, RepositoryVerb) else Verb(verb).value
        self.description = description
        self.checks = list(rewrites) + list(reads)
        self.kwargs = kwargs

    def apply(self, backend):
        """Call the declared method of this verb on ``backend`` (a ``Backend``, or the repository)."""
        return getattr(backend, self.verb)(**self.kwargs)

    def __repr__(self):
        return 'Action(%s, %r)' % (self.verb, self.kwargs)


class Settings(NamedTuple):
    """What ``Backend.plan_settings`` gives: the actions that apply the backend options, and the record after them.

    ``predicted`` None means "the record as it was read".
    """

    actions: tuple = ()
    predicted: Optional[object] = None


class Backend(abc.ABC):
    """Volumes and snapshots on one storage system.

    What the manager calls, and in which order, within one module run:

    1. ``__init__(runner, config)`` parses and validates the backend's dict
       option; bad configuration raises ``InvalidInputError`` here, before any
       command runs.
    2. ``validate_volume_name`` / ``validate_snapshot_name``, then ``connect``.
    3. Planning: ``read_volume`` of the volume (and of a clone's source), then,
       for the records that read returned, ``allocation_unit``, ``plan_settings``,
       ``predict_deleted_snapshot`` and, for a record that a plan creates,
       ``predict_volume`` / ``predict_snapshot``.
    4. With a change to apply and not in check mode: ``lock`` of the volumes
       concerned; inside it, step 3 again, then ``check_rewritable`` for every
       record an action rewrites or reads, then the actions' ``Verb`` methods in
       plan order, then ``read_volume`` for the result. In check mode step 3 is
       followed by ``check_rewritable`` only.

    So every call after a ``read_volume`` in the same run (and, in a change,
    under the same lock) may reuse what that read found: ``ListingBackend``
    keeps its listing for this, and LVM takes the extent size from it instead
    of running ``vgs``. A backend must still answer correctly when called
    without such a read (it then reads for itself).
    """

    #: the value of the ``backend`` option that selects this class
    name = None
    #: the ``format`` values this backend stores
    formats = ('raw',)
    #: True when a deleted snapshot may linger as ``pending_delete`` until the storage
    #: system removes it by itself; deleting it again is then a no-op
    deferred_delete = False

    def __init__(self, runner, config):
        """Keep ``runner``; subclasses parse and validate ``config`` (the backend's dict option) here."""
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
        """Exclude concurrent writers of ``volumes`` for the ``with`` body.

        The ``with`` statement gets what ``lock_turns`` would have read just before
        this run took the locks, or None.
        """
        yield

    def lock_turns(self, volumes):
        """A value that changes whenever a run takes or lets go of a lock on ``volumes``, read without it.

        The manager reads it before its first read of storage; when the locks it then
        takes carry the same ``turns``, no run changed these volumes in between and
        the first read stands for the read under the lock. None (the default, and
        while a run holds one of the locks) makes the manager read again under the lock.
        """
        return None

    def settle(self, volume, fresh=True, apply=True):
        """Finish what a run that was killed left half done but had committed to, on ``volume``.

        Called under the volume's lock before any change of the volume (``fresh=False``:
        the listing read under the lock stands). Returns what it did, as an action's
        description, so that the change is planned again; None (the default) when it
        had nothing to finish. ``apply=False`` (check mode) returns what it would do
        and changes nothing.
        """
        return None

    def forget(self):
        """Drop what earlier reads kept (``ListingBackend``); the manager calls it before it reads again under
        the lock, so that nothing read before the lock is taken for the state under it."""

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
        """Return the ``Settings`` that bring ``record`` (a volume or snapshot) to the backend options.

        Settings are what the backend dict asks of every volume besides its size
        (ZFS properties, an LV that must be active); the default has none. Its
        actions use the ``Verb`` methods below (``activate``, ``set_properties``).
        """
        return Settings((), record)

    def predict_deleted_snapshot(self, snapshot):
        """Return what a delete of ``snapshot`` leaves listed: None, or a ``pending_delete`` record."""
        return None

    def predict_volume(self, predicted):
        """Return the volume that ``create_volume`` or ``clone_volume`` will make, as far as it is known now.

        ``predicted`` has the uniform keys; a backend fills in its ``details``.
        Only what creation alone can know (``created``) stays null. A clone that
        the backend would refuse may be refused here, before any command. The
        default keeps ``predicted``.
        """
        return predicted

    def predict_snapshot(self, predicted, volume, snapshots):
        """Return the snapshot that ``create_snapshot`` will make of ``volume`` (with ``snapshots``).

        The default keeps ``predicted``.
        """
        return predicted

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
    def create_snapshot(self, volume, name, temporary=False):
        """Take snapshot ``name`` of ``volume``; ``temporary`` marks one that lives for a run (stored, listed)."""

    @abc.abstractmethod
    def delete_snapshot(self, volume, name):
        """Delete snapshot ``name`` of ``volume``, keeping every other point in time."""

    @abc.abstractmethod
    def restore_volume(self, name, image, size, fmt):
        """Create ``name`` of ``size`` bytes holding the content of ``image``, a backup (``BackupImage``).

        The new volume lists as ``creating`` until the copy is complete.
        """

    # -- the data mover's source side (backup) ----------------------------------------------

    def location(self):
        """Where this backend's volumes are (volume group, parent dataset, directory), as a backup records it."""
        raise NotImplementedError

    def uses_directory(self, directory):
        """True when this backend keeps its volumes in ``directory`` (which a repository must not share)."""
        return False

    def snapshot_identity(self, snapshot):
        """What tells ``snapshot`` apart from any other snapshot of the same name (a guid or uuid), or None."""
        return None

    def open_snapshot(self, snapshot):
        """A context manager that yields a reader of ``snapshot``'s content (``read(offset, length)``)."""
        raise NotImplementedError('The %s backend cannot read snapshots.' % self.name)

    def changed_ranges(self, base, snapshot):
        """The ``(offset, length)`` ranges in which ``snapshot`` differs from the older snapshot ``base``.

        None means the backend has no change set for the pair, and the data mover
        compares every cluster instead. Read only.
        """
        return None

    # Settings verbs: only a backend whose ``plan_settings`` plans them implements them.

    def activate(self, volume, snapshot=None):
        """Make ``volume`` (or its ``snapshot``) usable on this host, for example an inactive LV active.

        Planned only by a backend's own ``plan_settings``; the default refuses.
        """
        raise NotImplementedError('The %s backend has nothing to activate.' % self.name)

    def set_properties(self, name, properties):
        """Set ``properties`` (name -> value, in the form the backend lists them) on volume ``name``.

        Planned only by a backend's own ``plan_settings``; the default refuses.
        """
        raise NotImplementedError('The %s backend has no properties to set.' % self.name)


class ListingBackend(Backend):
    """A backend that reads everything from one listing command.

    Subclasses implement ``records``; reading one volume, all volumes or all
    snapshots is then one listing each. A backend with ``scoped_reads`` lists
    only the volume asked for (its ``list_all(volume)``), so reading one volume
    costs the same however many others there are; the others list everything
    each time. What was listed is kept until the next change (``forget``), so a
    change applied right after the manager's read under the lock does not list
    again: the change verbs, ``check_rewritable`` and ``predict_volume`` read
    ``listing(fresh=False, volume=...)``, which is the manager's read of step 3
    (see ``Backend``) of that volume (or of everything), or a new listing when
    there is none.
    """

    #: True when ``list_all(volume)`` lists that volume only
    scoped_reads = False
    _listings = None

    @abc.abstractmethod
    def list_all(self, volume=None):
        """Run the listing command; return what ``records`` takes.

        With ``scoped_reads`` and a ``volume``, only what ``records(listing, volume)``
        needs is listed (nothing when the volume does not exist).
        """

    @abc.abstractmethod
    def records(self, listing, name=None):
        """Return the volumes (by name) and a dict of each one's snapshots in chain order."""

    def listing(self, fresh=True, volume=None):
        """The listing of ``volume`` (or of all): a new one, or with ``fresh`` false the kept one if no change
        came since (a kept listing of everything serves any volume)."""
        kept = None if fresh else self.kept_listing(volume)
        if kept is not None:
            return kept
        scope = volume if self.scoped_reads else None
        found = self.list_all(scope) if self.scoped_reads else self.list_all()
        self._listings = {} if scope is None else dict(self._listings or {})
        self._listings[scope] = found
        return found

    def kept_listing(self, volume=None):
        """The kept listing that covers ``volume`` (or all), or None: never a new read."""
        kept = self._listings or {}
        scope = volume if self.scoped_reads else None
        return kept.get(scope, kept.get(None))

    def forget(self):
        """Drop the kept listings."""
        self._listings = None

    def change(self, argv, **kwargs):
        """Run a command that changes storage; the kept listings are stale from now on."""
        self.forget()
        return self.runner.run(argv, **kwargs)

    def read_volume(self, name):
        volumes, snapshots = self.records(self.listing(volume=name), name)
        if not volumes:
            return None, []
        return volumes[0], snapshots.get(name, [])

    def list_volumes(self, name=None):
        return self.records(self.listing(volume=name), name)[0]

    def list_snapshots(self, volume=None):
        snapshots = self.records(self.listing(volume=volume), volume)[1]
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
