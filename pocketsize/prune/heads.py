"""Remove attention heads physically (the Q/K/V and output projections shrink).

How heads are removed, and whether layers may keep different counts, is the layout's
(prune/layouts/): BERT-layout models go through transformers' own `prune_heads`, which records
the removed heads in `config.pruned_heads` for `from_pretrained` to re-apply; decoders keep one
count in every layer. This module plans which heads go on layouts of the first kind.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError


def plan_head_removal(layout, scores: list, fraction: float, scope: str = "layer") -> dict:
    """{layer: [original head indices to remove]}, removing the lowest-scoring heads.

    scope="layer": round(fraction * heads) from every layer; refuses a fraction that would
    empty a layer. scope="global": the lowest-scoring heads over the whole model, with scores
    normalised per layer (Michel et al. 2019), always keeping each layer's best head.
    """
    import torch

    present = [layout.current_heads(i) for i in range(len(layout.layers()))]
    plan: dict[int, list[int]] = {}
    if scope == "layer":
        for i, heads in enumerate(present):
            n_remove = int(round(fraction * len(heads)))
            if n_remove >= len(heads):
                raise PocketsizeError(
                    f"heads={fraction} would remove all {len(heads)} heads of layer {i}; "
                    f"use at most {(len(heads) - 1) / len(heads):.3f} or scope='global' "
                    "(which keeps each layer's best head)"
                )
            order = torch.argsort(scores[i])[:n_remove].tolist()
            if order:
                plan[i] = sorted(heads[j] for j in order)
    elif scope == "global":
        total = sum(len(h) for h in present)
        n_remove = int(round(fraction * total))
        candidates = []
        for i, heads in enumerate(present):
            s = scores[i] / (scores[i].norm() + 1e-20)
            best = int(torch.argmax(s))
            candidates += [(float(s[j]), i, heads[j]) for j in range(len(heads)) if j != best]
        candidates.sort()
        for _, i, h in candidates[:n_remove]:
            plan.setdefault(i, []).append(h)
        plan = {i: sorted(v) for i, v in sorted(plan.items())}
    else:
        raise PocketsizeError(f"scope={scope!r} is unknown; use 'layer' or 'global'")
    return plan
