"""The machine a benchmark run names: its processor, read from /proc/cpuinfo's text."""

from __future__ import annotations

from pathlib import Path

from bench import cpu

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cache size\t: 1024 KB
flags\t\t: fpu vme

processor\t: 1
model name\t: Another CPU
"""


def test_the_first_processor_is_described_by_model_family_and_cache() -> None:
    assert cpu.describe_processor(CPUINFO) == (
        "model name AMD EPYC, cpu family 25, model 17, stepping 1, cache size 1024 KB"
    )


def test_a_machine_without_cpuinfo_is_still_named(tmp_path: Path) -> None:
    described = cpu.machine(tmp_path / "absent")
    assert "CPUs, kernel " in described
    assert "(" not in described


def test_the_load_average_is_three_rounded_numbers() -> None:
    assert cpu.load((1.23456, 2.0, 0.129)) == [1.23, 2.0, 0.13]
