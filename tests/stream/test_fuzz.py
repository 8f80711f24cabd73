"""A bounded coverage-guided fuzz run (atheris) of the pipeline, seeded with the corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO
from tests.stream.corpus import corpus, envelope

# A soak, so out of the default suite (which must stay within 15 minutes on 2 cores: loading
# the instrumented pipeline alone takes most of a minute there); the hostile corpus and the
# property tests run every time. Run it with FLEETOPS_FUZZ_SECONDS=60 scripts/test tests/stream.
FUZZ_SECONDS = int(os.environ.get("FLEETOPS_FUZZ_SECONDS", "0") or 0)
# Loading the instrumented pipeline takes most of a minute on a loaded machine.
START_SECONDS = 120


@pytest.mark.skipif(FUZZ_SECONDS <= 0, reason="a soak: set FLEETOPS_FUZZ_SECONDS to run it")
def test_fuzzing_the_pipeline_finds_no_crash(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for index, case in enumerate(corpus()):
        if len(case.payload) < 1_000_000:
            (seeds / f"corpus-{index:03d}").write_bytes(case.payload)
    (seeds / "valid").write_bytes(
        envelope(
            {
                "type": "task-failed",
                "hostname": "celery@w",
                "uuid": "u",
                "timestamp": 1.0,
                "exception": "KeyError('x')",
                "clock": 3,
            }
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "tests.stream.fuzz_pipeline", f"-max_total_time={FUZZ_SECONDS}",
         "-rss_limit_mb=2048", "-max_len=4096", "-print_final_stats=1",
         f"-artifact_prefix={tmp_path}/", str(seeds)],
        cwd=REPO, capture_output=True, text=True, timeout=FUZZ_SECONDS + START_SECONDS,
    )  # fmt: skip
    report = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, report
    assert "stat::number_of_executed_units" in report, report
