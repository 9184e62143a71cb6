"""``python -m taxi_assets.devdata generate|serve ...``: the ``devdata`` commands of
:mod:`taxi_assets.cli`."""

import sys

from taxi_assets.cli import main

if __name__ == "__main__":
    sys.exit(main(["devdata", *sys.argv[1:]]))
