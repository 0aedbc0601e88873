"""What every command line of the package shares."""

import sys

from sda.data import DataError


def exit_status(action):
    """Run ``action()``; a user error becomes one line on stderr and status 2."""
    try:
        action()
    except (DataError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
