"""Metrics as a stream: names, events, the run reader, dashboard and report."""
