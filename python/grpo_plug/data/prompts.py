"""Prompts: a task's user message through the model's chat template, as token ids."""

from __future__ import annotations

from typing import Any

from grpo_plug.types import Example, Task


def build_prompt(tokenizer: Any, task: Task, ex: Example) -> list[int]:
    msgs = [{"role": "user", "content": task.user_message(ex)}]
    # tokenize=True applies the template's own BOS once; re-tokenising its text would add
    # a second one.
    ids = tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [int(i) for i in ids]
