"""Benchmark: the sample school's first night with and without seeded faults, against emulators in their own processes.

Runs `idlifecycle sync` on the sample school (jobs/nightly.toml's feed, mapping and guards) twice,
each time on a fresh tenant: once clean, once with `--rate` of requests (and batch parts) meeting a
fault of the harness (`idlifecycle.sandbox.faults`: 429 with Retry-After, 503, reset before the
write, reset after it, hang). Prints each night's wall time, the faulted night's time relative to
the clean one, the faults injected and each night's "Applied:" line; a faulted night that fails
changes is followed by further nights (faults still on) until one exits 0 or `--nights` is used up,
and each is timed. Staff passwords go to slips (no mail server here).

    .venv/bin/python bench/faulted_night.py                  # Entra, 20 % mixed faults, seed 7
    .venv/bin/python bench/faulted_night.py --google --rate 0.1 --seed 3
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from idlifecycle.sandbox.faults import FAULT_KINDS, FaultSpec
from idlifecycle.sandbox.night import SchoolNight

TODAY = "2026-11-23"


def night(folder: Path, *, google: bool, faults: FaultSpec | None, timeout: float, nights: int) -> list[float]:
    """Wall seconds of each sync until one exits 0 (at most `nights`)."""
    school = SchoolNight.start(folder, google=google, faults=faults, timeout_seconds=timeout)
    times: list[float] = []
    try:
        for number in range(1, nights + 1):
            began = time.monotonic()
            run = school.run(TODAY, timeout=3600)
            times.append(time.monotonic() - began)
            applied = re.search(r"^Applied: .*$", run.stdout, re.M)
            print(f"  {'faulted' if faults else 'clean'} night, run {number}: {times[-1]:.1f} s, exit "
                  f"{run.returncode}; {applied.group(0) if applied else run.stderr.strip()[-300:]}", flush=True)
            if run.returncode == 0:
                break
        if faults is not None:
            for name, emulator in school.emulators().items():
                print(f"  {name}: faults injected {emulator.stats()['faults']}")
    finally:
        school.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kinds", default="+".join(FAULT_KINDS))
    parser.add_argument("--hang", type=float, default=20.0, help="seconds a hung request is held")
    parser.add_argument("--timeout", type=float, default=4.0, help="the connectors' per-request timeout")
    parser.add_argument("--google", action="store_true", help="Google Workspace beside Entra")
    parser.add_argument("--nights", type=int, default=3, help="faulted nights at most, until one exits 0")
    args = parser.parse_args()
    faults = FaultSpec(rate=args.rate, seed=args.seed, kinds=tuple(args.kinds.split("+")), hang=args.hang)
    with tempfile.TemporaryDirectory(prefix="faulted-night-") as work:
        clean = night(Path(work) / "clean", google=args.google, faults=None, timeout=args.timeout, nights=1)
        faulted = night(Path(work) / "faulted", google=args.google, faults=faults, timeout=args.timeout,
                        nights=args.nights)
    print(f"clean night: {clean[0]:.1f} s; faulted night ({faults.to_arg()}): {faulted[0]:.1f} s = "
          f"{faulted[0] / clean[0]:.1f}x; until a run exits 0: {sum(faulted):.1f} s in {len(faulted)} run(s) = "
          f"{sum(faulted) / clean[0]:.1f}x")


if __name__ == "__main__":
    main()
