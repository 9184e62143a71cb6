"""Errors shared by the layers."""


class RowCountMismatch(Exception):
    """A layer read or wrote another number of rows than its source holds.

    Raised before anything becomes visible: the lake file is not published, the warehouse
    transaction is rolled back. The message names the file or table and both counts.
    """


class NotPartitioned(Exception):
    """A table whose months must be partitions exists as a plain table (an earlier
    version's layout). The message names the one-off command that converts it."""
