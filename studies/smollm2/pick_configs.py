"""Write a points space: a subset of a study space's grid, to re-run on other cells.

    # N configs of the grid drawn at random with seed 0 (the seed-1 noise sample)
    python studies/smollm2/pick_configs.py sample SPACE N OUT
    # the top K of the CBS ranking of a results slice (optionally on some datasets only), plus N
    # more spread over the rest of the ranking (the train-size-1000 configs)
    python studies/smollm2/pick_configs.py cbs SPACE N OUT --table T --method M --train-size S --top K \
        [--datasets a,b]

Every picked config keeps the base space's fixed values, so its config id is unchanged.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml

from staytuned.cbs import rank
from staytuned.results import load_results
from staytuned.search.space import config_id, load_space


def spread(items: list, n: int) -> list:
    """``n`` items at the centres of ``n`` equal slices of ``items`` (n=1: the median one)."""
    if n >= len(items):
        return list(items)
    return [items[int((i + 0.5) * len(items) / n)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["sample", "cbs"])
    ap.add_argument("space")
    ap.add_argument("n", type=int, help="configs drawn from the grid (sample) or the rest of the ranking (cbs)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--table")
    ap.add_argument("--method")
    ap.add_argument("--train-size")
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--datasets", help="comma-separated: rank on these datasets only")
    args = ap.parse_args()
    space = load_space(args.space)
    method = args.method or space.fixed.get("method", "lora")
    grid = space.grid({"method": method})
    by_id = {config_id(c): c for c in grid}
    if args.mode == "sample":
        idx = sorted(random.Random(0).sample(range(len(grid)), min(args.n, len(grid))))
        picked = [grid[i] for i in idx]
        how = f"{len(picked)} of the {len(grid)} configs of {args.space}, drawn with seed 0"
    else:
        datasets = args.datasets.split(",") if args.datasets else None
        table = load_results(args.table).slice(method=method, train_size=args.train_size, datasets=datasets)
        order = [cid for cid in rank(table.score_matrix()).config_ids if cid in by_id]
        top, rest = order[: args.top], order[args.top:]
        chosen = top + spread(rest, args.n)
        picked = [by_id[c] for c in chosen]
        on = f", on {args.datasets}" if args.datasets else ""
        how = (f"the CBS top {len(top)} of {args.table} ({method}, train size {args.train_size}{on}) "
               f"plus {len(chosen) - len(top)} spread over the rest of its ranking")
    data = {k: v for k, v in space.to_dict().items() if k not in ("source", "zip", "half_fraction")}
    data["name"] = args.out.stem
    data["description"] = f"Points space: {how}."
    data["points"] = [{k: v for k, v in c.items() if k not in space.fixed} for c in picked]
    args.out.write_text(yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")
    check = load_space(str(args.out)).grid({"method": method})
    assert [config_id(c) for c in check] == [config_id(c) for c in picked], "config ids changed"
    print(f"{args.out}: {len(picked)} configs ({how})")


if __name__ == "__main__":
    main()
