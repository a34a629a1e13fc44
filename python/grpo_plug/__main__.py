from grpo_plug.cli import main

main()
