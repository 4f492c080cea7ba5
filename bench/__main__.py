"""``python -m bench``: run the benchmarks and write bench/results/latest.{json,md,png}.

python -m bench            every workload the issue names, about 20 minutes here
python -m bench --quick    every workload, tiny sizes: a minute or two
python -m bench --full     more rounds, and 10,000-part chords run to the end (hours)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import harness, report
from .stack import NAMES

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_const", const="quick", dest="mode", help="tiny sizes"
    )
    mode.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="mode",
        help="10,000-part chords to the end",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where the results go (default: bench/results)"
    )
    parser.add_argument(
        "--backends",
        default=",".join(NAMES),
        help=f"comma-separated subset of {','.join(NAMES)} (default: all)",
    )
    parser.add_argument(
        "--readme", choices=("auto", "yes", "no"), default="auto",
        help="update README's Benchmarks section (auto: for default and full runs into bench/results)",
    )  # fmt: skip
    parser.add_argument(
        "--rewrite", action="store_true", help="only rewrite the reports from latest.json"
    )
    args = parser.parse_args(argv)
    if args.rewrite:
        summary = json.loads((args.out / "latest.json").read_text())
        paths = report.write(summary, args.out, README if args.readme != "no" else None)
        print(f"rewrote {', '.join(str(p) for p in paths.values())}")
        return 0
    plan = harness.PLANS[args.mode or "default"]
    backends = tuple(name.strip() for name in args.backends.split(",") if name.strip())
    unknown = set(backends) - set(NAMES)
    if unknown or not backends:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(NAMES)}")
    update = args.readme == "yes" or (
        args.readme == "auto"
        and plan.mode != "quick"
        and args.out.resolve() == RESULTS
        and backends == NAMES
    )

    def say(line: str) -> None:
        print(time.strftime("%H:%M:%S"), line, flush=True)

    say(f"bench: mode {plan.mode}, backends {', '.join(backends)}")
    summary = harness.run(plan, args.out / "tmp", backends, say)
    paths = report.write(summary, args.out, README if update else None)
    print()
    print(report.ratio_table(summary))
    print()
    print(report.targets_list(summary))
    print()
    say(f"wrote {', '.join(str(p) for p in paths.values())}" + (f" and {README}" if update else ""))
    say(f"took {summary['meta']['run_seconds'] / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
