"""Print the settings table, or with a markdown path, rewrite the table in that file."""

import sys
from pathlib import Path

from latency_oracle.settings import settings_table, update_settings_table

if len(sys.argv) > 1:
    update_settings_table(Path(sys.argv[1]))
else:
    print(settings_table())
