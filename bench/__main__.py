"""``python -m bench``: run the benchmarks and write bench/results/latest.{json,md,png}.

python -m bench            every workload the issue names, timed on the local stack, counted, and
                           timed production-like (latency as in one region, -c 16): about 25 minutes
python -m bench --quick    every workload, tiny sizes: a minute or two
python -m bench --full     more rounds, and 10,000-part chords run to the end (hours)
python -m bench --chords   chord scaling only (celery-gcs): bench/results/chord-scaling.{json,md},
                           about 20 minutes; with --quick, tiny sizes; with --full, more rounds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import chord_report, chord_scaling, harness, latency, report
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
        "--chords",
        action="store_true",
        help="chord scaling: time per part at 500 and 5,000 parts, requests per part up to 20,000",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where the results go (default: bench/results)"
    )
    parser.add_argument(
        "--backends",
        help=f"comma-separated subset of {','.join(NAMES)} (default: all; not with --chords)",
    )
    parser.add_argument(
        "--readme", choices=("auto", "yes", "no"), default="auto",
        help="update README's Benchmarks section (auto: for default and full runs into bench/results; "
             "never with --chords)",
    )  # fmt: skip
    parser.add_argument(
        "--rewrite", action="store_true", help="only rewrite the reports from latest.json"
    )
    parser.add_argument(
        "--no-production", action="store_true",
        help="leave out the production-like pass (answers held as in one region, workers -c 16)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", default="", metavar="KIND=MS,...",
        help=f"the production-like pass's held time per request, overriding bench/latency.py's model; "
             f"kinds: {', '.join(latency.MODEL)}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.chords:
        if args.backends is not None:
            parser.error("--chords measures celery-gcs only: drop --backends")
        if args.readme == "yes":
            parser.error("--chords writes chord-scaling.md, not README's section: drop --readme yes")
        return _chords(args.mode or "default", args.out, args.rewrite)
    if args.rewrite:
        summary = json.loads((args.out / "latest.json").read_text())
        paths = report.write(summary, args.out, README if args.readme != "no" else None)
        print(f"rewrote {', '.join(str(p) for p in paths.values())}")
        return 0
    try:
        model = {**latency.MODEL, **latency.parse_overrides(args.latency)}
    except ValueError as exc:
        parser.error(str(exc))
    if args.no_production and args.latency:
        parser.error("--latency sets the production-like pass, which --no-production leaves out: drop one")
    plan = harness.PLANS[args.mode or "default"]
    chosen = args.backends if args.backends is not None else ",".join(NAMES)
    backends = tuple(name.strip() for name in chosen.split(",") if name.strip())
    unknown = set(backends) - set(NAMES)
    if unknown or not backends:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(NAMES)}")
    update = args.readme == "yes" or (
        args.readme == "auto"
        and plan.mode != "quick"
        and args.out.resolve() == RESULTS
        and backends == NAMES
    )

    say = _say
    say(f"bench: mode {plan.mode}, backends {', '.join(backends)}")
    summary = harness.run(
        plan, args.out / "tmp", backends, say, production=None if args.no_production else model
    )
    paths = report.write(summary, args.out, README if update else None)
    print()
    print(report.combined_table(summary))
    print()
    print(report.targets_list(summary))
    print()
    say(f"wrote {', '.join(str(p) for p in paths.values())}" + (f" and {README}" if update else ""))
    say(f"took {summary['meta']['run_seconds'] / 60:.1f} minutes")
    return 0


def _chords(mode: str, out: Path, rewrite: bool) -> int:
    if rewrite:
        summary = json.loads((out / f"{chord_report.NAME}.json").read_text())
        paths = chord_report.write(summary, out)
        print(f"rewrote {', '.join(str(p) for p in paths.values())}")
        return 0
    plan = chord_scaling.PLANS[mode]
    _say(f"bench --chords: mode {plan.mode}, timed {plan.timed}, {plan.rounds} rounds, "
         f"counted {plan.counted}")  # fmt: skip
    summary = chord_scaling.run(plan, out / "tmp", _say)
    paths = chord_report.write(summary, out)
    print()
    print(chord_report.timing_table(summary["timing"]))
    print()
    print(chord_report.target_line(summary["timing"]))
    print()
    print(chord_report.counting_table(summary["counting"]))
    print()
    _say(f"wrote {', '.join(str(p) for p in paths.values())}")
    _say(f"took {summary['meta']['run_seconds'] / 60:.1f} minutes")
    return 0


def _say(line: str) -> None:
    print(time.strftime("%H:%M:%S"), line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
