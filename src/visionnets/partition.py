"""How K workers split a feature map, and what each must receive from the others.

Pure geometry shared by model parallelism (:mod:`visionnets.distributed.model_parallel`) and the
capacity planner (:mod:`visionnets.train.plan`), so the planner's bytes are the executor's bytes.
Every map is split into the same grid of a x b blocks (a the divisor of K nearest sqrt(K), so
blocks are square-ish and borders short); a layer reading (k, s, p) windows needs, for its
block of outputs, the input rows lo = o0 s - p .. hi = (o1 - 1) s + k - p (and the same for
columns), clipped to the map; what lies beyond the map is the layer's padding.

    >>> blocks((7, 9), 4)[3]          # worker 3 of 4 (a 2 x 2 grid) owns rows 3:7, columns 4:9
    Rect(r0=3, r1=7, c0=4, c1=9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering 0..n, sizes differing by at most one."""
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def grid(k: int) -> tuple[int, int]:
    """K workers as a x b blocks, a the divisor of K nearest sqrt(K) from below."""
    a = max(d for d in range(1, int(k ** 0.5) + 1) if k % d == 0)
    return a, k // a


@dataclass(frozen=True)
class Rect:
    """Rows r0:r1 and columns c0:c1 of a map."""

    r0: int
    r1: int
    c0: int
    c1: int

    def __and__(self, other: "Rect") -> "Rect | None":
        r = Rect(max(self.r0, other.r0), min(self.r1, other.r1), max(self.c0, other.c0), min(self.c1, other.c1))
        return r if r.r0 < r.r1 and r.c0 < r.c1 else None

    def shift(self, origin: "Rect") -> "Rect":
        """This rectangle in the coordinates of a tensor holding ``origin``."""
        return Rect(self.r0 - origin.r0, self.r1 - origin.r0, self.c0 - origin.c0, self.c1 - origin.c0)

    @property
    def index(self) -> tuple:
        return (..., slice(self.r0, self.r1), slice(self.c0, self.c1))

    @property
    def area(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def blocks(size: tuple[int, int], k: int) -> list[Rect]:
    """The K blocks of an (h, w) map, row-major over the a x b grid."""
    a, b = grid(k)
    return [Rect(*rows, *cols) for rows in split(size[0], a) for cols in split(size[1], b)]


def _reach(o0: int, o1: int, k: int, s: int, p: int, n: int) -> tuple[int, int, int, int]:
    """Input rows [lo, hi) that outputs o0:o1 of a (k, s, p) window read from n rows, and the
    padding (before, after) they need beyond the input."""
    lo, hi = o0 * s - p, (o1 - 1) * s + k - p
    return max(lo, 0), min(hi, n), max(-lo, 0), max(hi - n, 0)


def needed_rects(window, in_size: tuple[int, int], out_blocks: list[Rect]) -> tuple[list[Rect], list[tuple]]:
    """For each output block of a layer with windows ``((kh, sh, ph), (kw, sw, pw))`` over an
    ``in_size`` map: the input rectangle it reads, and the padding (left, right, top, bottom)
    beyond the map (``torch.nn.functional.pad`` order)."""
    (kh, sh, ph), (kw, sw, pw) = window
    needed, pads = [], []
    for r in out_blocks:
        a0, a1, pt, pb = _reach(r.r0, r.r1, kh, sh, ph, in_size[0])
        b0, b1, pl, pr = _reach(r.c0, r.c1, kw, sw, pw, in_size[1])
        needed.append(Rect(a0, a1, b0, b1))
        pads.append((pl, pr, pt, pb))
    return needed, pads


@dataclass
class ExchangePlan:
    """One worker's part of an exchange: (worker, rectangle in owned coordinates) to send,
    (worker, rectangle in region coordinates) to receive, and its own part (src, dst)."""

    owned_shape: tuple[int, int]
    region_shape: tuple[int, int]
    sends: list[tuple[int, Rect]]
    recvs: list[tuple[int, Rect]]
    own: tuple[Rect, Rect] | None

    @property
    def halo(self) -> int:
        """Positions received (per channel and example)."""
        return sum(r.area for _, r in self.recvs)


def exchange_plan(rank: int, owned: list[Rect], needed: list[Rect]) -> ExchangePlan:
    """What worker ``rank`` sends and receives when every worker w owns ``owned[w]`` of a map
    and needs ``needed[w]`` of it."""
    mine, need = owned[rank], needed[rank]
    sends = [(w, cut.shift(mine)) for w, other in enumerate(needed) if w != rank and (cut := mine & other)]
    recvs = [(w, cut.shift(need)) for w, other in enumerate(owned) if w != rank and (cut := other & need)]
    cut = mine & need
    own = (cut.shift(mine), cut.shift(need)) if cut else None
    return ExchangePlan((mine.r1 - mine.r0, mine.c1 - mine.c0), (need.r1 - need.r0, need.c1 - need.c0),
                        sends, recvs, own)


def window_of(module: Any) -> tuple | None:
    """((kh, sh, ph), (kw, sw, pw)) of a layer that reads neighbourhoods, else None. Local contrast
    normalization reads two windows of radius r = kernel // 2 in turn (its subtractive step, then
    its divisive step on that result): one window of radius 2r, stride 1."""
    k = getattr(module, "kernel_size", None)
    if k is None:
        return None
    if type(module).__name__ in ("LocalContrastNorm2d", "SubtractiveNorm2d", "DivisiveNorm2d"):
        r = 2 * (k // 2) if type(module).__name__ == "LocalContrastNorm2d" else k // 2
        return (2 * r + 1, 1, r), (2 * r + 1, 1, r)
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kh, kw = pair(k)
    s = getattr(module, "stride", None)
    sh, sw = (kh, kw) if s is None else pair(s)
    ph, pw = pair(getattr(module, "padding", 0))
    return (kh, sh, ph), (kw, sw, pw)


DIRECT_SUM_WORKERS = 8      # up to this many workers, a sum is K - 1 direct messages from each


def sum_bytes(nbytes: int, k: int) -> int:
    """Bytes one worker sends to sum an ``nbytes`` tensor over K workers: to each other worker
    directly (K <= ``DIRECT_SUM_WORKERS``), else an all-reduce by recursive halving and doubling
    (2 (K-1)/K of it, in 2 log2 K rounds)."""
    return (k - 1) * nbytes if k <= DIRECT_SUM_WORKERS else 2 * nbytes * (k - 1) // k


def sum_messages(k: int) -> tuple[int, int]:
    """(messages, rounds) of one worker summing a tensor over K workers (see :func:`sum_bytes`)."""
    rounds = 2 * math.ceil(math.log2(k))
    return (k - 1, 1) if k <= DIRECT_SUM_WORKERS else (rounds, rounds)


def border_traffic(layers: list[tuple[int, tuple[int, int], tuple[int, int], tuple]], k: int) -> list[dict[str, int]]:
    """Per worker, for one example of a training step over the layers ``(channels in, input (h, w),
    output (h, w), window)`` (in order; the first reads the input, which every worker has): the
    ``values`` it sends (forward: its borders; backward: their gradients), its ``messages``, and
    the ``rounds``: exchanges it takes part in (its messages of one exchange travel at once)."""
    out = [{"values": 0, "messages": 0, "rounds": 0} for _ in range(k)]
    owned = None
    for channels, in_size, out_size, window in layers:
        outs = blocks(out_size, k)
        needed, _ = needed_rects(window, in_size, outs)
        if owned is not None:
            for w in range(k):
                plan = exchange_plan(w, owned, needed)
                n = len(plan.sends) + len(plan.recvs)
                out[w]["values"] += (sum(r.area for _, r in plan.sends) + plan.halo) * channels
                out[w]["messages"] += n
                out[w]["rounds"] += 2 if n else 0                 # forward and backward
        owned = outs
    return out
