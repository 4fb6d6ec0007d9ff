# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors raised by the backend layer and turned into ``fail_json`` in one place."""

from __future__ import annotations


class StorageError(Exception):
    """A failure the user can act on: one sentence, plus optional detail keys.

    ``details`` is merged into the module result, for example ``cmd``, ``rc``,
    ``stdout`` and ``stderr`` of a failed command.
    """

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInputError(StorageError):
    """A parameter was refused before any command ran."""


class CommandError(StorageError):
    """A backend command exited non-zero."""


class ChainError(StorageError):
    """An image chain or info file does not follow the layout and is left untouched."""


class InUseError(StorageError):
    """A running process holds the image; its chain must not be rewritten."""
