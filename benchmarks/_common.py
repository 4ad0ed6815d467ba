"""What every benchmark shares: run a worker in a fresh interpreter (so its peak
memory is its own) and read the JSON it prints last; this process's peak RSS."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_worker(module: str, *args: str) -> dict:
    """`python -m <module> <args>`; its result is the JSON object on its last stdout line."""
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
