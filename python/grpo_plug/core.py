"""The Rust data path: answer extraction, grading, advantages, micro-batch packing.

Typed wrappers over the compiled extension ``grpo_plug._core``. Batch calls copy
their inputs (contiguous float32/float64 rewards and int64/float32 rows given as NumPy
arrays are read in place instead; do not write to them during a call), release the
GIL and run on a dedicated thread pool (:func:`set_num_threads`); results do not
depend on the thread count. Bad input raises ``TypeError`` /
:class:`~grpo_plug.errors.CoreInputError` (a ``ValueError``); a packing that cannot meet
its budget raises :class:`~grpo_plug.errors.PackingInfeasible`; a bug in the extension
raises :class:`~grpo_plug.errors.CoreInternalError` instead of crashing the interpreter.
Input copies and packing outputs go into buffers kept between calls (a few per kind,
up to 256/512 MiB each), because touching fresh memory costs more than the work on
some virtual machines.

Answer extraction (:func:`extract_answer`)
------------------------------------------
The answer is located by the first rule that applies:

1. the last non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (brace-balanced; an unclosed
   one takes the rest of the text);
2. the last ``#### ...`` line whose content starts like a number (so Markdown
   headings such as ``#### Step 2`` are skipped);
3. the last anchor phrase (``final answer``, ``the answer is``, ``the answer isn't``,
   ``answer:``; case-insensitive), then the first committed number of the sentence or
   line after it (blank lines and Markdown ``**`` skipped); ``The answer is 2+3=5.``
   follows the ``=`` to 5; when that sentence has no number (``Answer: Let's think
   step by step.``) the anchor is ignored;
4. otherwise the last number in the text that is not retracted.

A box or ``####`` line whose content is not exactly one number gives no answer
(``\\boxed{18 and 20}``, ``\\boxed{18, 20}``), even if numbers appear elsewhere.

Retracted numbers and corrections (rules 3 and 4): a number right after ``not``,
``never``, a ``n't`` contraction (``isn't``, ``wasn't``), ``instead of``, ``rather
than`` or a report of an earlier answer (``I said``, ``previously said``, ``originally
wrote``) is passed over: ``The answer is not 72, it is 70.`` and ``It is 70, not 72.``
give 70, ``The answer is 72, not 70.`` gives 72. After the anchor's sentence, a
self-correction word (``wait``, ``oops``, ``correction``, ``mistake``) followed by a
stated number (after ``=`` or ``is``, ``it's``, ``be``, ``gives``, ``makes``,
``equals`` ...) replaces the anchor's number, the last such number winning (``The
final answer is 72. Wait, 72 - 2 = 70.`` gives 70); a correction that states no number
(``Wait, let me double-check.``) keeps it.

Number words: English cardinals up to the trillions, with hyphens, ``and`` and
``a hundred`` (``twelve``, ``forty-two``, ``one hundred and five``, ``two million three
thousand``, ``twelve hundred``, ``negative seven``), inside a box (``\\boxed{twelve}``,
``\\boxed{\\text{forty-two}}``) and after an anchor where an answer stands (``The answer
is twelve.``, ``... not twelve, it's thirteen``; not ``the two friends``). Ordinals and
fractions (``third``, ``twenty-first``, ``one third``), comparisons (``one more than``,
``two of``, ``one or two``) and the pronoun ``one`` (``each one``) are not numbers. The
last-number rule reads digits only.

Prose in a box: a box that is not one expression but has a word in it is read as text;
its numbers (digits, number words, ``\\frac``, ``\\sqrt``) must all have the same value:
``\\boxed{She needs 18 more}``, ``\\boxed{\\text{The answer is } 18}``, ``\\boxed{18
\\text{ (apples)}}`` and ``\\boxed{\\text{Maria makes } \\$18 \\text{ per day}}`` are 18;
``\\boxed{18 \\text{ or } 19}``, ``\\boxed{5 \\text{ or six}}``, ``\\boxed{x^2}`` and digits
glued to letters (``2x``) are no answer.

Normalisation: fullwidth digits and other NFKC-style forms, Unicode minus signs,
exotic spaces, ``×`` and ``÷`` are folded to ASCII; currency signs (``$ € £ ¥``,
``\\$``), ``\\text{}`` / ``\\textbf{}`` / ``\\mathrm{}`` wrappers, unit words
(``5 dollars``, ``12 apples``, ``\\text{ cm}``, ``km/h``, ``m^2``), ``\\left`` /
``\\right``, ``^\\circ`` / ``^{\\circ}`` / ``°`` and a trailing period are dropped;
thousands separators count only in exact groups of three, with commas or spaces (also
U+00A0, U+202F, U+2009): ``1,234`` and ``1 000 000`` are numbers, ``12,34``, ``4 2`` and
``0 100`` are not; ``.5`` is 0.5. Values: integers, decimals, ``e`` notation (``1.2e3``,
``5E-2``, ``1.2E+3``), ``\\frac{a}{b}`` / ``\\dfrac`` / ``\\tfrac`` / ``\\frac12`` / ``a/b``,
mixed numbers (``3 1/2``, ``3\\frac{1}{2}`` = 7/2), powers of ten (``3 \\times 10^{4}``,
``1.5\\cdot10^3``, ``3 x 10^4``), exact roots (``\\sqrt{16}``, ``\\sqrt{2.25}``,
``\\sqrt[3]{27}``; ``\\sqrt{2}`` is refused, not rounded), the right-hand side of a
final ``=`` (``x = 5``, ``2+3=5``), and inside a box small arithmetic with ``+ - * / ^ (
)``, ``\\times``, ``\\cdot``, evaluated exactly on 128-bit rationals. Refused (no answer):
``inf``, ``NaN``, ``\\infty`` and other unknown LaTeX commands, hex ``0x1F``, ``1_000``,
glued exponents (``3e4f``), division by zero, overflow (``1e39``), numbers of more than
40 digits, exponents beyond 128, nesting deeper than 64. The canonical string is an
integer (``"1000"``), a decimal for decimal input (``"0.5"``) or a reduced fraction
(``"1/2"``); a ``%`` sign is dropped from it.

Grading (:func:`grade`)
-----------------------
Exact comparison when both sides are integers, otherwise a relative tolerance of
1e-6. A ``%`` on either side also tries that value divided by 100 (``50%`` matches
0.5 and 50). References may be GSM8K's raw answer field (``"... #### 72"``), a
boxed answer or a bare answer; an unparsable reference or a completion without an
answer scores 0. With ``literal_only=True`` a computed answer scores 0: an operator
``+ - * ^`` applied inside a box or a division there that comes out whole
(``\\boxed{40 + 49}``, ``\\boxed{48/2}``), and anywhere a power of ten (``3 \\times
10^{4}``) or a root (``\\sqrt{16}``); ``\\boxed{89}``, ``\\boxed{7/2}``, ``\\boxed{-2}``,
``40 + 49 = 89``, number words, ``1 250``, ``1.2e3`` and one number in prose still
count; tasks whose question is the expression use it. Every
item is processed in time linear in its length.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from grpo_plug import _core
from grpo_plug.errors import CoreInputError, CoreInternalError, PackingInfeasible

__all__ = [
    "InternalError",
    "MicroBatch",
    "extract_answer",
    "get_num_threads",
    "grade",
    "group_advantages",
    "pack_microbatches",
    "set_num_threads",
    "split_microbatches",
]

InternalError = CoreInternalError  # kept under its old name


@contextmanager
def _mapped() -> Iterator[None]:
    """The extension's exceptions as :mod:`grpo_plug.errors` classes, by kind, so callers
    catch a packing that cannot fit without reading the message."""
    try:
        yield
    except _core.InfeasibleError as e:
        raise PackingInfeasible(str(e)) from None
    except _core.InputError as e:
        raise CoreInputError(str(e)) from None
    except _core.InternalError as e:
        raise CoreInternalError(str(e)) from e


#: One sequence of token ids: a list of ints or a 1-D integer array.
TokenIds: TypeAlias = Sequence[int] | NDArray[np.integer]
#: One sequence of log-probabilities: a list of floats or a 1-D float array.
LogProbs: TypeAlias = Sequence[float] | NDArray[np.floating]

ADVANTAGE_MODES = ("grpo", "dr_grpo", "rloo")


def _check_sequence(value: object, name: str) -> None:
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a sequence, not {type(value).__name__}")


def extract_answer(text: str) -> str | None:
    """Return the final answer of ``text`` in canonical form, or None.

    >>> extract_answer("So the total is $1,000.")
    '1000'
    >>> extract_answer("The answer is \\\\boxed{\\\\frac{1}{2}}")
    '1/2'
    """
    with _mapped():
        return _core.extract_answer(text)


def grade(
    completions: Sequence[str], golds: Sequence[str], *, literal_only: bool = False
) -> NDArray[np.float32]:
    """Score each completion against its reference: float32 array of 1.0 / 0.0.

    ``golds[i]`` may be GSM8K's raw answer field (``"... #### 72"``) or a bare answer.
    With ``literal_only`` an answer computed by an operator inside a box
    (``\\boxed{40 + 49}``, ``\\boxed{48/2}``) grades 0: for tasks whose question is
    itself the expression, where evaluating it would reward copying the question.
    Raises TypeError naming the index of a non-str item and ValueError when the
    lengths differ.
    """
    _check_sequence(completions, "completions")
    _check_sequence(golds, "golds")
    with _mapped():
        return _core.grade(completions, golds, bool(literal_only))


def group_advantages(
    rewards: ArrayLike,
    group_size: int,
    *,
    mode: str = "grpo",
    eps: float = 1e-6,
    normalize_batch: bool = False,
) -> NDArray[np.float32]:
    """Group-relative advantages of 1-D ``rewards`` made of consecutive groups.

    Modes (``G`` = ``group_size``, per group mean ``m`` and unbiased std ``s``):

    * ``"grpo"``: ``(r - m) / (s + eps)``;
    * ``"dr_grpo"``: ``r - m``;
    * ``"rloo"``: ``r - mean(other rewards of the group)`` = ``(r - m) * G / (G - 1)``.

    A group whose rewards are all equal gets exactly 0 (never NaN). With
    ``normalize_batch`` the group-centred values are divided by the batch's
    unbiased std plus ``eps`` instead (all zeros when that std is 0).

    Raises ValueError when ``len(rewards)`` is not divisible by ``group_size``, a
    reward is NaN or infinite (naming its index), or ``mode`` is unknown.
    """
    arr: NDArray[np.float32] | NDArray[np.float64]
    if isinstance(rewards, np.ndarray) and rewards.dtype.char in "fd":
        arr = rewards  # float32/float64 arrays are read in place, without a copy
    else:
        arr = np.asarray(rewards, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {arr.shape}")
    with _mapped():
        return _core.group_advantages(arr, group_size, mode, float(eps), bool(normalize_batch))


def set_num_threads(n: int) -> None:
    """Use ``n`` worker threads for batch calls (1 = no parallelism, 0 = default).

    The default is ``$GRPO_PLUG_NUM_THREADS`` or the number of available cores. The
    pool is rebuilt lazily on the next call (and after ``fork``).
    """
    with _mapped():
        _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of worker threads batch calls use."""
    with _mapped():
        return _core.get_num_threads()


@dataclass(frozen=True, eq=False, slots=True)
class MicroBatch:
    """One packed micro-batch of ``T`` tokens holding ``S`` sequences.

    Arrays are C-contiguous and writable, ready for ``torch.from_numpy``. Each field
    of every micro-batch of one call is a disjoint view into one array per field
    (one allocation, not one per micro-batch); it never aliases the inputs.

    Attributes:
        input_ids: int64 ``[T]``, prompt then completion of each sequence, back to back.
        position_ids: int64 ``[T]``, position inside its own sequence (restarts at 0).
        loss_mask: float32 ``[T]``, 1.0 on completion tokens, 0.0 on prompt tokens.
        old_logprobs: float32 ``[T]``, rollout log-prob of token ``t`` at position
            ``t`` (0 where ``loss_mask`` is 0).
        advantages: float32 ``[T]``, the sequence's advantage on its completion
            tokens (0 elsewhere).
        cu_seqlens: int32 ``[S + 1]``, boundaries: sequence ``k`` is
            ``cu_seqlens[k]:cu_seqlens[k + 1]``.
        seq_indices: int64 ``[S]``, index of each packed sequence in the input.
    """

    input_ids: NDArray[np.int64]
    position_ids: NDArray[np.int64]
    loss_mask: NDArray[np.float32]
    old_logprobs: NDArray[np.float32]
    advantages: NDArray[np.float32]
    cu_seqlens: NDArray[np.int32]
    seq_indices: NDArray[np.int64]

    @property
    def num_tokens(self) -> int:
        """``T``, the number of tokens."""
        return int(self.input_ids.shape[0])

    @property
    def num_sequences(self) -> int:
        """``S``, the number of sequences."""
        return int(self.seq_indices.shape[0])


def pack_microbatches(
    prompt_ids: Sequence[TokenIds],
    completion_ids: Sequence[TokenIds],
    completion_logprobs: Sequence[LogProbs],
    advantages: ArrayLike,
    *,
    max_tokens: int,
    n_ranks: int = 1,
    max_seqs: int | None = None,
) -> list[list[MicroBatch]]:
    """Pack sequences (prompt + completion) into micro-batches, ``[rank][micro_batch]``.

    ``max_seqs``: at most that many sequences per micro-batch (see
    :func:`split_microbatches`), applied after the plan below.

    Plan (deterministic, ties broken by index):

    1. sequences sorted longest first, packed first-fit-decreasing into bins of at
       most ``max_tokens`` tokens; a sequence longer than ``max_tokens`` gets a
       micro-batch of its own (the only case where a micro-batch exceeds the budget);
    2. every rank gets the same number ``K = ceil(bins / n_ranks)`` of micro-batches:
       the heaviest bins holding two or more sequences are split until there are
       ``n_ranks * K``;
    3. bins, heaviest first, go to the rank with the fewest tokens so far among
       those with fewer than ``K`` bins; sequences inside a micro-batch keep input
       order.

    When ``n_ranks * K`` non-empty micro-batches are impossible (fewer sequences
    than that, e.g. fewer sequences than ranks) this raises ValueError. No sequences
    at all gives ``n_ranks`` empty lists.

    Raises ValueError when input lengths differ, a completion's log-probs do not
    match its length or are not finite (naming the index), an advantage is not
    finite, or ``max_tokens`` / ``n_ranks`` < 1; TypeError for items of the wrong type.
    """
    for value, name in (
        (prompt_ids, "prompt_ids"),
        (completion_ids, "completion_ids"),
        (completion_logprobs, "completion_logprobs"),
    ):
        _check_sequence(value, name)
    adv = np.ascontiguousarray(advantages, dtype=np.float64)
    if adv.ndim != 1:
        raise ValueError(f"advantages must be 1-D, got shape {adv.shape}")
    with _mapped():
        ranks = _core.pack_microbatches(
            prompt_ids, completion_ids, completion_logprobs, adv, max_tokens, n_ranks
        )
    packed = [[MicroBatch(*arrays) for arrays in rank] for rank in ranks]
    if max_seqs is None or all(mb.num_sequences <= max_seqs for r in packed for mb in r):
        return packed
    return split_microbatches(packed, max_seqs)


def _cut(mb: MicroBatch, a: int, b: int) -> MicroBatch:
    """Sequences ``a:b`` of ``mb`` (views, in order)."""
    t0, t1 = int(mb.cu_seqlens[a]), int(mb.cu_seqlens[b])
    return MicroBatch(
        mb.input_ids[t0:t1],
        mb.position_ids[t0:t1],
        mb.loss_mask[t0:t1],
        mb.old_logprobs[t0:t1],
        mb.advantages[t0:t1],
        (mb.cu_seqlens[a : b + 1] - mb.cu_seqlens[a]).astype(np.int32),
        mb.seq_indices[a:b],
    )


def _halves(mb: MicroBatch, pieces: int) -> list[MicroBatch]:
    """``mb`` cut into ``pieces`` runs of consecutive sequences, as even as counts go."""
    bounds = np.linspace(0, mb.num_sequences, pieces + 1).round().astype(int)
    return [_cut(mb, int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def split_microbatches(ranks: list[list[MicroBatch]], max_seqs: int) -> list[list[MicroBatch]]:
    """Every micro-batch holding more than ``max_seqs`` sequences cut into runs of at
    most that many (``actor.batch_size`` on the packed path: each micro-batch is one
    forward and backward, so this bounds its activations). With several ranks the
    pieces are dealt out again so every rank has the same count (the heaviest cut
    further where the count does not divide), heaviest first to the rank with the
    fewest tokens so far; PackingInfeasible when no cut is left to make."""
    if max_seqs < 1:
        raise ValueError(f"max_seqs must be >= 1, got {max_seqs}")
    pieces = [
        piece
        for rank in ranks
        for mb in rank
        for piece in _halves(mb, -(-mb.num_sequences // max_seqs))
    ]
    n_ranks = len(ranks)
    if n_ranks == 1:
        return [pieces]
    while len(pieces) % n_ranks:
        cuttable = [p for p in pieces if p.num_sequences > 1]
        if not cuttable:
            raise PackingInfeasible(
                f"cannot deal {len(pieces)} micro-batches evenly to {n_ranks} ranks"
            )
        big = max(cuttable, key=lambda p: p.num_tokens)
        pieces.remove(big)
        pieces += _halves(big, 2)
    per_rank = len(pieces) // n_ranks
    out: list[list[MicroBatch]] = [[] for _ in range(n_ranks)]
    tokens = [0] * n_ranks
    for mb in sorted(pieces, key=lambda p: -p.num_tokens):
        r = min((i for i in range(n_ranks) if len(out[i]) < per_rank), key=lambda i: tokens[i])
        out[r].append(mb)
        tokens[r] += mb.num_tokens
    return out
