"""The few named kinds of error, each with one meaning.

- `UsageError`: bad input from the user. The CLI prints the message (which lists the valid
  choices) and exits with status 2, writing nothing.
- `Unsupported`: the framework cannot do what the cell asks (a precision, an operator). The cell
  ends with status ``unsupported`` and the framework's own message.
- `DeviceUnavailable`: the cell's device is not on this host (no GPU, no driver). The cell ends
  with status ``skipped`` and that reason: the matrix is fine, the host cannot run it.
- Any other exception inside a cell is a failure: status ``failed`` with the log tail.
"""

from __future__ import annotations

USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """Bad input from the user: say what is wrong and what would be right."""


class Unsupported(Exception):
    """The framework cannot run this cell; the message is the framework's own words."""


class ArtifactError(UsageError):
    """A missing or corrupt artifact: a usage error whose message says how to export it."""


class DeviceUnavailable(Exception):
    """The cell's device is absent from this host; the message says what is missing."""
