"""The learner: what changes the policy's weights.

- ``actor``: :class:`Learner` (model, reference, optimizer, scheduler, one train step)
- ``step``: the GRPO loss over one minibatch's micro-batches
- ``logprobs``: log-probs of a packed micro-batch (packed / padded / shared-prompt)
- ``shared``: the shared-prompt row (each group's prompt once) and its micro-batches
- ``head``: the LM head's log-probs and entropies, without ``[N, V]`` logits when it can
- ``attention``: the packed row's varlen kernels and the rule of ``actor.attention``
- ``dist``: ranks under torchrun; ``fsdp``: FSDP2 sharding and DCP state
"""

from grpo_plug.learner.actor import Learner, LearnerBatch, make_optimizer, make_scheduler
from grpo_plug.learner.dist import DistInfo
from grpo_plug.learner.logprobs import (
    completion_logprobs,
    packed_logprobs,
    shared_prompt_logprobs,
)
from grpo_plug.learner.step import MinibatchStats, recompute_old_logprobs, train_minibatch

__all__ = [
    "DistInfo",
    "Learner",
    "LearnerBatch",
    "MinibatchStats",
    "completion_logprobs",
    "make_optimizer",
    "make_scheduler",
    "packed_logprobs",
    "recompute_old_logprobs",
    "shared_prompt_logprobs",
    "train_minibatch",
]
