"""The SGLang rollout backend: HTTP client, server launcher, the CPU import shim."""
