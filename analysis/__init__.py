"""analysis: metrics, statistics, scorecards, reports and the audit command."""
