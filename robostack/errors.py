"""One exception type for every user-facing failure; the CLI prints its message as one line and exits non-zero."""


class RobostackError(Exception):
    """A problem the user can act on (bad input, corrupt store, unknown task...)."""


class StoreError(RobostackError):
    """The episode store is missing, corrupt, locked or does not hold what was asked for."""


class SpecError(RobostackError):
    """Data does not match a declared spec (key, shape, dtype, finiteness)."""
