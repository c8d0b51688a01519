"""Metrics for musicbench: pair metrics and IR metrics. Importing this package imports no model."""
