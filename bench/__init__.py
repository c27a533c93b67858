"""leadbot benchmarks: `python -m bench [--quick] [--only NAME] [--db sqlite|postgres|both]`.

Not part of the test suite. Every figure is measured against the real product as deployed
(`python -m bot.cli serve` in a subprocess, signed HTTP requests, a loopback Slack) and, where a
baseline makes sense, divided by the same figure for a bare Bolt app measured in the same run,
because the machines this runs on are small and shared: absolute numbers drift, ratios less so.
"""
