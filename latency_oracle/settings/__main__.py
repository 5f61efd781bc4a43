"""Print the settings table; with a markdown path, rewrite the table in that file.

``--check`` rewrites nothing and exits 1 when the file's table differs from the code
(``python -m latency_oracle.settings --check docs/settings.md``).
"""

import argparse
import sys
from pathlib import Path

from latency_oracle.settings import settings_table, update_settings_table

parser = argparse.ArgumentParser(prog="python -m latency_oracle.settings", description=__doc__)
parser.add_argument("markdown", nargs="?", type=Path, help="file whose table to rewrite")
parser.add_argument("--check", action="store_true", help="only check that the table is current")
args = parser.parse_args()
if args.markdown is None:
    print(settings_table())
elif args.check:
    if settings_table() not in args.markdown.read_text():
        sys.exit(f"{args.markdown}: stale settings table; run without --check to rewrite it")
else:
    update_settings_table(args.markdown)
