"""``python -m tests.conformance`` (``make conformance``): Celery's integration suite against ``gcs://``.

Prints one line per file and every failing test; exits 1 when any file has a
failure, an error, an unexpected pass or overran its bound. docs/conformance.md
has the results and what each skip and failure means.
"""

from __future__ import annotations

import argparse
import json
import signal
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
        "--gcs-emulator", choices=tuple(runner.GCS_EMULATORS), default="wrapper",
        help="wrapper: the project's (celery_gcs.local.gcs_emulator); stock: gcp-storage-emulator as installed"
        " (make conformance GCS_EMULATOR=...; default: wrapper)",
    )  # fmt: skip
    bounds = ", ".join(f"{name} {bound:.0f}" for name, bound in runner.FILE_BOUNDS.items())
    parser.add_argument(
        "--file-timeout", type=float,
        help=f"seconds every file's pytest may take before it is killed (default, per file: {bounds})",
    )  # fmt: skip
    parser.add_argument(
        "--test-timeout", type=float, default=300.0,
        help="pytest-timeout for tests the suite gives no timeout of their own (default: 300, its @flaky's)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        type=Path,
        help="logs and summary.json go here (default: .cache/conformance/run-EMULATOR)",
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, passed on to every file")
    args = parser.parse_args(argv)
    args.out = args.out or CACHE / f"run-{args.gcs_emulator}"
    # A SIGTERM (CI's timeout, make's) unwinds like Ctrl-C: the finally blocks stop
    # the running file's pytest and the stack, which run in process groups of their own.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))

    locked = suite.locked_celery(ROOT / "uv.lock")
    root = suite.extract_suite(suite.fetch_sdist(locked, CACHE), CACHE)
    args.out.mkdir(parents=True, exist_ok=True)
    emulator = runner.GCS_EMULATORS[args.gcs_emulator]
    print(
        f"celery {locked.version}'s t/integration against gcs:// ({emulator}); logs in {args.out}",
        flush=True,
    )
    extra = runner.plugin_args(args.gcs_emulator) + (["-k", args.keyword] if args.keyword else [])
    stack = runner.start_stack(args.out / "stack", gcs_emulator=args.gcs_emulator)
    results = []
    try:
        for name in args.files:
            stack.reset()
            backend = f"{stack.result_backend}/conformance/{name.removesuffix('.py')}"
            env = runner.suite_env(stack, backend)
            result = runner.run_file(
                root, name, env, bound=args.file_timeout or runner.bound(name), test_timeout=args.test_timeout,
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
