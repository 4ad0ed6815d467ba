"""`make bench`: run every benchmark in its own process (so peak memory is its own)
and print each one's table. BENCH_SCALE=0.1 make bench for a quick pass."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ORDER = ["generator", "ingest", "features", "model", "scoring", "drift", "demo", "soak"]


def main() -> int:
    here = Path(__file__).parent
    found = {p.stem.removeprefix("bench_"): p for p in here.glob("bench_*.py")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    failed = []
    for name in names:
        print(f"\n##### bench_{name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{name}"])
        print(f"(bench_{name}: {time.perf_counter() - started:.0f} s, exit {code})", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("FAILED benchmarks:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
