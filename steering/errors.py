"""The one exception type user-facing code catches and prints as a single line."""


class SteeringError(Exception):
    """A problem with the user's input or environment, explained in one line."""
