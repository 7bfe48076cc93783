"""Which promotion paths (restart, inplace) the chaos matrix and the nemesis run with.

`make test` is near CI's time limit: by default every case runs on the restart path and only
the most telling one on the in-place path too. RMQWD_CHAOS_PROMOTION=both (what `make chaos`
sets), =inplace or =restart runs every case on those paths.
"""

from __future__ import annotations

import os

__all__ = ["PROMOTION_ENV", "promotions"]

PROMOTION_ENV = "RMQWD_CHAOS_PROMOTION"
_CHOICES = {"restart": ("restart",), "inplace": ("inplace",), "both": ("restart", "inplace")}


def promotions(*, in_make_test: tuple[str, ...] = ("restart",)) -> tuple[str, ...]:
    """The paths a case runs on: `in_make_test` when RMQWD_CHAOS_PROMOTION is unset, else
    what it names; anything else there fails the collection, so a typo runs nothing silently."""
    wanted = os.environ.get(PROMOTION_ENV, "").strip()
    if not wanted:
        return in_make_test
    if wanted not in _CHOICES:
        raise ValueError(f"{PROMOTION_ENV}={wanted!r}: expected restart, inplace or both")
    return _CHOICES[wanted]
