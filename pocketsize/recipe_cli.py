"""`pocketsize run RECIPE.yaml [--set key=value ...] [--fresh] [--run-dir DIR]`."""

from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="run a recipe end to end (resumable)")
    p.add_argument("recipe", help="a recipe YAML file, e.g. recipes/sentiment.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one recipe key, e.g. --set distill.epochs=1 (repeatable)",
    )
    p.add_argument("--run-dir", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--fresh", action="store_true", help="redo every stage")
    p.add_argument("--force", action="store_true", help="reuse a run directory of another recipe")
    p.add_argument("--check", action="store_true", help="only validate the recipe, run nothing")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pocketsize.recipe import load_recipe, run_recipe

    if args.check:
        recipe = load_recipe(args.recipe, args.overrides)
        print(f"recipe {recipe['name']}: valid")
        return 0
    run_recipe(
        args.recipe,
        run_dir=args.run_dir,
        overrides=args.overrides,
        fresh=args.fresh,
        force=args.force,
    )
    return 0
