"""What a person reads: report.md, metrics.json and the pictures."""
