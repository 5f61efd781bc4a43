"""``latency-oracle demo``: the whole product on one machine, with a live table."""
