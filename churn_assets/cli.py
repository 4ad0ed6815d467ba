"""`churn-assets`: generate a synthetic world, import the public data set, replay the demo."""
from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from churn_assets.settings import paths_from_env


def _scenario(text: str) -> tuple[str, str]:
    name, _, month = text.partition("@")
    if not month:
        raise argparse.ArgumentTypeError(f"scenario must look like NAME@YYYY-MM, got {text!r}")
    return name, month


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="churn-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic world as monthly drop folders")
    gen.add_argument("--members", type=int, default=20_000)
    gen.add_argument("--start", default="2016-05", help="first month, YYYY-MM")
    gen.add_argument("--months", type=int, default=12)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--scenario", type=_scenario, action="append",
                     help="NAME@YYYY-MM, repeatable: none, channel_shift, engagement_drop, price_rise "
                          "(default channel_shift@2017-02)")
    gen.add_argument("--out", type=Path, default=None, help="output data dir (default $CHURN_DATA_DIR)")

    kaggle = sub.add_parser("import-kaggle", help="split the public WSDM full files into monthly drops")
    kaggle.add_argument("source_dir", type=Path)
    kaggle.add_argument("--out", type=Path, default=None)

    demo = sub.add_parser("demo", help="replay a world Monday by Monday through the asset graph and summarise")
    demo.add_argument("--members", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--start", default=None, help="first month, YYYY-MM (default 2016-05)")
    demo.add_argument("--months", type=int, default=None, help="months in the world (default 14)")
    demo.add_argument("--scenario", type=_scenario, action="append",
                      help="NAME@YYYY-MM, repeatable; 'none@2016-05' for a stationary world "
                           "(default channel_shift@2017-02)")
    demo.add_argument("--treatment-effect", type=float, default=None,
                      help="scale of the actions' true effects in the world (default 1; 0: nothing works)")
    demo.add_argument("--keep", action="store_true", help="do not reset the warehouse, MLflow and instance first")
    demo.add_argument("--until", type=date.fromisoformat, default=None,
                      help="last Monday to replay, YYYY-MM-DD (default: the first Monday after the world ends)")

    args = parser.parse_args(argv)
    if args.command == "generate":
        from churn_assets.synthetic.simulator import generate_world

        summary = generate_world(args.out or paths_from_env().data_dir, members=args.members, start=args.start,
                                 months=args.months, seed=args.seed,
                                 scenarios=args.scenario if args.scenario is not None else [("channel_shift", "2017-02")])
        print(summary)
    elif args.command == "import-kaggle":
        from churn_assets.ingest.kaggle_import import import_kaggle

        print(import_kaggle(args.source_dir, args.out or paths_from_env().data_dir))
    elif args.command == "demo":
        from churn_assets.demo import DEFAULT_WORLD, run_demo

        world = {"start": args.start or DEFAULT_WORLD["start"], "months": args.months or DEFAULT_WORLD["months"],
                 "scenarios": args.scenario or DEFAULT_WORLD["scenarios"],
                 "treatment_effect": DEFAULT_WORLD["treatment_effect"] if args.treatment_effect is None
                 else args.treatment_effect}
        print(run_demo(members=args.members, seed=args.seed, reset=not args.keep, world=world,
                       until=args.until).render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
