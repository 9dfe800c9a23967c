"""Errors a user sees as one message (the CLI prints them without a traceback)."""


class ExportError(RuntimeError):
    """An export could not be made or did not verify; nothing was left behind.

    `check`, where set, is the merge check's figures (a dict), so a caller can report them."""

    def __init__(self, message: str, check: dict | None = None):
        super().__init__(message)
        self.check = check
