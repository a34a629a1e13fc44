"""Rollouts: the controller (requests in flight, retries, aborts, policy versions) and
the backends it drives: ``hf`` (in-process) and ``sglang`` (HTTP servers)."""
