"""``python -m taxi_assets.devdata generate|serve ...``: the ``devdata`` commands of
:mod:`taxi_assets.cli`."""

import sys

from taxi_assets.cli import main
from taxi_assets.cli.interrupted import report_ctrl_c_in_one_line

if __name__ == "__main__":
    report_ctrl_c_in_one_line()
    sys.exit(main(["devdata", *sys.argv[1:]]))
