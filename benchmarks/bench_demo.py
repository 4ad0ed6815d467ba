"""The demo's pipeline time per phase, this checkout against a baseline commit, side by side.

Both replays run the same world (BENCH_SCALE x 20 k members, the default 14 months) in
fresh interpreters, one after the other, each in its own throw-away copy of its code and
data dir, so the ratio compares code, not machines. The baseline is a `git worktree` of
BENCH_DEMO_BASELINE (default: the commit before the layout and speed work) run with this
checkout's virtualenv. Run it on an idle machine: the figures are wall-clock seconds.

    .venv/bin/python -m benchmarks.bench_demo                  # ~8-10 minutes at scale 1
    BENCH_SCALE=0.1 BENCH_DEMO_BASELINE=HEAD~5 .venv/bin/python -m benchmarks.bench_demo
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT

MEMBERS = 20_000
DEFAULT_BASELINE = "bc7a8e8"  # main before the layout move and the speed work
_PHASE = re.compile(r"^\s{2}(?P<name>\S.*?)\s+(?P<secs>\d+\.\d)$")


def _phases(stdout: str) -> dict[str, float]:
    """The demo summary's "-- phases (seconds) --" block as {phase: seconds}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-- phases (seconds) --"))
    phases = {}
    for line in lines[start + 1:]:
        match = _PHASE.match(line)
        if not match:
            break
        phases[match["name"]] = float(match["secs"])
    return phases


def _runs(stdout: str) -> str:
    match = re.search(r"Dagster runs: (\d+) \((\d+) did not succeed\)", stdout)
    return f"{match[1]} runs, {match[2]} failed" if match else "runs unknown"


def run_demo(code_dir: Path, members: int) -> tuple[dict[str, float], str, float]:
    """Replay the default world with the code in `code_dir`, in a scratch copy of the repo layout."""
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        work = Path(tmp)
        for name in ("dagster.yaml", "workspace.yaml"):
            shutil.copy(code_dir / name, work / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "DAGSTER_", "MLFLOW_"))}
        env.update(PYTHONPATH=str(code_dir), DAGSTER_HOME=str(work), CHURN_DATA_DIR=str(work / "data"),
                   CHURN_DAGSTER_DIR=str(work / "data" / "dagster"),  # only the baseline's dagster.yaml reads these
                   CHURN_DAGSTER_LOGS_DIR=str(work / "data" / "dagster" / "logs"), GX_ANALYTICS_ENABLED="false",
                   MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "churn_assets.cli", "demo", "--members", str(members)],
                             cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if out.returncode:
            raise RuntimeError(f"demo with {code_dir} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return _phases(out.stdout), _runs(out.stdout), wall


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    members = max(1_000, round(MEMBERS * scale))
    ref = os.environ.get("BENCH_DEMO_BASELINE", DEFAULT_BASELINE)
    print(f"demo benchmark, {members} members, baseline {ref}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench_demo_base_") as tmp:
        baseline_dir = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline_dir), ref], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            base, base_runs, base_wall = run_demo(baseline_dir, members)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline_dir)], cwd=ROOT, check=False)
    now, now_runs, now_wall = run_demo(ROOT, members)
    print(f"baseline: {base_runs}, {base_wall:.0f} s wall; this checkout: {now_runs}, {now_wall:.0f} s wall")
    header = f"{'phase':<38}{'baseline s':>11}{'now s':>9}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name in [*base, *(n for n in now if n not in base)]:
        b, n = base.get(name), now.get(name)
        ratio = f"{n / b:>7.2f}" if b and n is not None else f"{'-':>7}"
        print(f"{name:<38}{b if b is not None else float('nan'):>11.1f}{n if n is not None else float('nan'):>9.1f}{ratio}")


if __name__ == "__main__":
    main()
