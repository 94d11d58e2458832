"""The one exception type user-facing code catches and prints as a single line."""

from __future__ import annotations


class SteeringError(Exception):
    """A problem with the user's input or environment, explained in one line.

    ``str(error)`` is the message for anyone, remote callers included: it must name no server path and
    no shell command. ``detail`` (optional, one line) is for a local user only (the CLI): file paths,
    the command to run. The app and API show ``str(error)`` and never ``detail``.

    Args:
        message: the one-line message naming what was wrong (file, item index, key, expected vs found).
        detail: an optional one-line addition for a local user (paths, a command); None: none.

    Example:
        >>> raise SteeringError("layer 40 is out of range: the model has layers 0..29")  # doctest: +SKIP
    """

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
