"""Reports of runs: Markdown and HTML tables, plots, CSV, and run-to-run comparison.

`tables` is shared by report.md, report.html and the summary printed at the end of a run.
"""
