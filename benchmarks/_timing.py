"""Interleaved timing: every variant runs once per round, in a fresh random order each round.

Machine noise on a shared host (other processes, frequency changes, a neighbour's burst) then
hits every variant alike, and per-round ratios (:func:`benchmarks._stats.paired_ratio`) cancel
the drift between rounds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._errors import BenchmarkUsageError

__all__ = ["RoundPolicy", "progress_bar", "run_interleaved"]


@dataclasses.dataclass(frozen=True)
class RoundPolicy:
    """How many rounds to run: ``rounds`` at most, stopping early once ``budget_s`` seconds of
    timed rounds are spent and at least ``min_rounds`` are done.

    Args:
        rounds: the most rounds to time (warm-up excluded).
        warmup: untimed rounds run first (session initialisation, allocator, caches, TensorRT
            engine builds).
        budget_s: soft time budget of the timed rounds; ``None`` for no budget.
        min_rounds: rounds always timed, budget or not (capped by ``rounds``).

    Raises:
        BenchmarkUsageError: a count or the budget is out of range.
    """

    rounds: int
    warmup: int
    budget_s: float | None = None
    min_rounds: int = 5

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise BenchmarkUsageError(f"--rounds must be >= 1, got {self.rounds}")
        if self.warmup < 0:
            raise BenchmarkUsageError(f"--warmup must be >= 0, got {self.warmup}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise BenchmarkUsageError(f"--budget must be > 0 seconds (0: none), got {self.budget_s}")
        object.__setattr__(self, "min_rounds", min(max(1, self.min_rounds), self.rounds))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_flags(self, args: Any) -> RoundPolicy:
        """This policy with the common flags ``--rounds --warmup --budget --min-rounds`` applied
        (a flag left out keeps this policy's value; ``--budget 0`` means no budget)."""
        def pick(flag: Any, default: Any) -> Any:
            return default if flag is None else flag

        return RoundPolicy(pick(args.rounds, self.rounds), pick(args.warmup, self.warmup),
                           pick(args.budget, self.budget_s) or None,
                           pick(args.min_rounds, self.min_rounds))


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr (a no-op object when disabled or tqdm is missing)."""
    bar: Any = None
    if enabled:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        except ImportError:  # tqdm is an optional extra
            bar = None

    class _Null:
        def update(self, n: int = 1) -> None:
            pass

        def set_postfix_str(self, s: str) -> None:
            pass

    try:
        yield bar if bar is not None else _Null()
    finally:
        if bar is not None:
            bar.close()


def run_interleaved(
    variants: Mapping[str, Callable[[], object]],
    policy: RoundPolicy,
    *,
    seed: int = 0,
    desc: str = "rounds",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Time every callable once per round, in a random order per round.

    Args:
        variants: name -> a callable that runs the thing to time once (and blocks until done).
        policy: rounds, warm-up and time budget.
        seed: seed of the per-round orders (runs are reproducible in order, not in time).
        desc: label of the progress bar.
        progress: show a tqdm progress bar.

    Returns:
        name -> seconds of each timed round; all lists have the same length (the rounds run),
        and index ``r`` of every list comes from round ``r``.
    """
    names = list(variants)
    if not names:
        raise BenchmarkUsageError("run_interleaved needs at least one variant")
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    with progress_bar(policy.warmup + policy.rounds, desc, progress) as bar:
        for _ in range(policy.warmup):
            for i in rng.permutation(len(names)):
                variants[names[i]]()
            bar.update(1)
        start = clock()
        for done in range(policy.rounds):
            for i in rng.permutation(len(names)):
                fn = variants[names[i]]
                t0 = clock()
                fn()
                times[names[i]].append(clock() - t0)
            bar.update(1)
            spent = clock() - start
            if (
                policy.budget_s is not None
                and done + 1 >= policy.min_rounds
                and spent >= policy.budget_s
            ):
                break
    return times
