"""``python -m taxi_assets.cli ...``."""

import sys

from taxi_assets.cli import main
from taxi_assets.cli.interrupted import report_ctrl_c_in_one_line

report_ctrl_c_in_one_line()
sys.exit(main())
