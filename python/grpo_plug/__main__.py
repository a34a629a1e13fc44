"""``python -m grpo_plug``: the ``grpo-plug`` command."""

from grpo_plug.cli import main

main()
