"""``python -m tests.conformance`` (``make conformance``): Celery's integration suite against ``gcs://``.

Prints one line per file and every failing test; exits 1 when any file has a
failure, an error, an unexpected pass or overran its bound. docs/conformance.md
has the results and what each skip and failure means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import runner, suite

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "conformance"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "files", nargs="*", default=list(runner.FILES),
        help=f"files of t/integration to run (default: {' '.join(runner.FILES)})",
    )  # fmt: skip
    parser.add_argument(
        "--stock-emulator", action="store_true",
        help="the stock gcp-storage-emulator instead of the project's wrapper (celery_gcs.local.gcs_emulator)",
    )  # fmt: skip
    parser.add_argument(
        "--file-timeout", type=float, default=2400.0,
        help="seconds one file's pytest may take before it is killed (default: 2400)",
    )  # fmt: skip
    parser.add_argument(
        "--test-timeout", type=float, default=300.0,
        help="pytest-timeout for tests the suite gives no timeout of their own (default: 300, its @flaky's)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=CACHE / "run", help="logs and summary.json go here"
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, passed on to every file")
    args = parser.parse_args(argv)

    locked = suite.locked_celery(ROOT / "uv.lock")
    root = suite.extract_suite(suite.fetch_sdist(locked, CACHE), CACHE)
    args.out.mkdir(parents=True, exist_ok=True)
    emulator = (
        "stock gcp-storage-emulator" if args.stock_emulator else "celery_gcs.local.gcs_emulator"
    )
    print(
        f"celery {locked.version}'s t/integration against gcs:// ({emulator}); logs in {args.out}",
        flush=True,
    )
    extra = ["-k", args.keyword] if args.keyword else []
    stack = runner.start_stack(args.out / "stack", stock_gcs=args.stock_emulator)
    results = []
    try:
        for name in args.files:
            stack.reset()
            backend = f"{stack.result_backend}/conformance/{name.removesuffix('.py')}"
            env = runner.suite_env(stack, backend)
            result = runner.run_file(
                root, name, env, bound=args.file_timeout, test_timeout=args.test_timeout,
                logs=args.out, extra=extra,
            )  # fmt: skip
            results.append(result)
            print(result.line(), flush=True)
    finally:
        stack.stop()
    print()
    for result in results:
        for problem in result.problems:
            print(f"  {result.name}: {problem}")
    summary = [
        {"file": r.name, "ok": r.ok, "counts": r.counts, "problems": r.problems, "seconds": round(r.seconds, 1),
         "timed_out": r.timed_out, "returncode": r.returncode, "log": str(r.log)}
        for r in results
    ]  # fmt: skip
    (args.out / "summary.json").write_text(
        json.dumps({"emulator": emulator, "files": summary}, indent=2) + "\n"
    )
    ok = all(result.ok for result in results)
    print("conformance: " + ("every file passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
