"""grpo-plug rollout backend ``openai``: OpenAI-compatible ``/v1/completions`` servers."""
