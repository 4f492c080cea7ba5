"""make conformance reads each file's outcome from pytest's output."""

from __future__ import annotations

from tests.conformance.runner import parse_output

OUTPUT = """\
t/integration/test_canvas.py::test_chord::test_large_header RERUN                [ 40%]
t/integration/test_canvas.py::test_chord::test_large_header FAILED               [ 40%]
=========================== short test summary info ============================
SKIPPED [95] t/integration/test_canvas.py:128: Requires redis result backend.
SUBFAILED[Error propagates from simple header task] t/integration/test_canvas.py::test_chord::test_x - celery.exceptions.ChordError: Dependency
FAILED t/integration/test_canvas.py::test_chord::test_large_header - celery.exceptions.TimeoutError: The operation timed out.
FAILED t/integration/test_canvas.py::test_chord::test_body_types[body is a chain] - ChordError
= 3 failed, 131 passed, 95 skipped, 1 xfailed, 2 warnings, 5 subtests passed, 10 rerun in 812.33s (0:13:32) =
"""


def test_counts_and_failures_are_read_from_the_summary() -> None:
    result = parse_output("test_canvas.py", OUTPUT)
    assert result.counts == {
        "failed": 3, "passed": 131, "skipped": 95, "xfailed": 1, "warnings": 2, "rerun": 10,
    }  # fmt: skip
    assert result.problems == [
        (
            "SUBFAILED[Error propagates from simple header task] t/integration/test_canvas.py::test_chord::test_x"
            " - celery.exceptions.ChordError: Dependency"
        ),
        (
            "FAILED t/integration/test_canvas.py::test_chord::test_large_header"
            " - celery.exceptions.TimeoutError: The operation timed out."
        ),
        "FAILED t/integration/test_canvas.py::test_chord::test_body_types[body is a chain] - ChordError",
    ]
    result.returncode = 1
    assert not result.ok


def test_a_file_that_printed_no_summary_is_not_ok() -> None:
    result = parse_output("test_tasks.py", "collected 120 items\n")
    result.returncode, result.timed_out = -9, True
    assert result.counts == {} and not result.ok
    assert "TIMED OUT" in result.line() and "no result" in result.line()


def test_unexpected_passes_of_tests_marked_xfail_for_rpc_are_not_failures() -> None:
    result = parse_output("test_canvas.py", "= 139 passed, 95 skipped, 1 xfailed, 5 xpassed in 406.05s =\n")
    result.returncode = 0
    assert result.counts["xpassed"] == 5 and result.ok
