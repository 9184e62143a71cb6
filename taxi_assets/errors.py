"""Errors shared by the layers."""


class RowCountMismatch(Exception):
    """A layer read or wrote another number of rows than its source holds.

    Raised before anything becomes visible: the lake file is not published, the warehouse
    transaction is rolled back. The message names the file or table and both counts.
    """


class NotPartitioned(Exception):
    """A table whose months must be partitions exists as a plain table (an earlier
    version's layout). The message names the one-off command that converts it."""


class LoadLogBehind(Exception):
    """A BigQuery copy job replaced a month but the load log record of the month could
    not be written after it: the log still names the previous load (never a load whose
    rows are not visible). Materializing the month again writes both."""


class ColumnTypesDiffer(Exception):
    """A warehouse table has a column of another type than the load's, into which values
    would be cast without a word (a naive New York time read as UTC, a fare rounded).
    Raised before anything is staged; the message names each column."""
