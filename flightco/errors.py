"""Exception types for flightco.

Every error a user can cause (a bad recipe, a malformed profile, a missing dataset) is a
``FlightcoError``: the CLI prints its message on one line and exits non-zero instead of
showing a traceback. Messages name the file and the field and say what is allowed.
"""

from __future__ import annotations


class FlightcoError(Exception):
    """Base class of all user-facing errors."""


class RecipeError(FlightcoError):
    """A recipe file is missing or invalid."""


class SpaceError(FlightcoError):
    """A search-space file is missing or invalid, or a genome does not fit the space."""


class ProfileError(FlightcoError):
    """A hardware-profile file is missing or invalid."""


class DataError(FlightcoError):
    """A dataset cannot be found or read."""


class RunError(FlightcoError):
    """A run folder, study or trial cannot be used as asked."""


class ExportError(FlightcoError):
    """An export failed or did not verify."""


class OutputError(FlightcoError):
    """A file the user asked for cannot be written where asked."""
