"""Run every benchmark script in ``benchmarks/`` and print a summary.

A benchmark is a ``benchmarks/<name>.py`` file that defines a top-level
``main()`` (found by parsing the file, so nothing is imported here) and writes
``benchmarks/results/<name>.json``. Files starting with ``_`` and this runner
are skipped. Each script runs in its own subprocess, one after another (the
machine is small and timings must not overlap), with its default arguments, or
with ``--quick`` when ``--quick`` is given here and the script's source
mentions that flag. The summary shows, per script: status, time, and the JSON's
``summary`` entry when it has one (otherwise its ``claim`` and top-level keys).

    python benchmarks/run_all.py                  # everything, default settings
    python benchmarks/run_all.py --quick          # smoke run of the scripts that support it
    python benchmarks/run_all.py --only render_vs_lucent forward_speed
    python benchmarks/run_all.py --list
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover(folder: Path = HERE) -> list[Path]:
    """Benchmark scripts: ``*.py`` with a top-level ``def main``, not private, not this runner."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_") or path.resolve() == Path(__file__).resolve():
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            found.append(path)  # let the run report the problem
            continue
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found.append(path)
    return found


def _supports(path: Path, flag: str) -> bool:
    """Whether the script mentions ``flag`` (read, not run: running ``--help`` could start a benchmark)."""
    try:
        return flag in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def run_one(path: Path, quick: bool, timeout: float, extra: list[str]) -> dict:
    name = path.stem
    args = list(extra)
    if quick and _supports(path, "--quick"):
        args.append("--quick")
    result_file = RESULTS / f"{name}.json"
    before = result_file.stat().st_mtime if result_file.exists() else None
    start = time.perf_counter()
    print(f"=== {name} {' '.join(args)}", flush=True)
    try:
        proc = subprocess.run([sys.executable, str(path), *args], timeout=timeout, cwd=HERE.parent)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"timeout after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    fresh = result_file.exists() and (before is None or result_file.stat().st_mtime > before)
    row = {"name": name, "status": status, "seconds": round(seconds, 1), "args": args,
           "result": str(result_file.relative_to(HERE.parent)) if fresh else None}
    if status == "ok" and not fresh:
        row["status"] = f"ok, but did not write {result_file.name}"
    if fresh:
        try:
            data = json.loads(result_file.read_text())
            row["summary"] = data.get("summary") if isinstance(data, dict) and "summary" in data else (
                {"claim": data.get("claim"), "keys": sorted(data)[:12]} if isinstance(data, dict) else None)
        except (OSError, ValueError) as e:
            row["status"] = f"{status}; unreadable JSON ({e})"
    return row


def _format_summary(summary) -> str:
    if summary is None:
        return ""
    if isinstance(summary, dict):
        return "; ".join(f"{k}={v}" for k, v in summary.items() if v is not None)
    return str(summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to the scripts that support it")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (file stems)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="benchmarks not to run")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds allowed per benchmark")
    ap.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    args, extra = ap.parse_known_args(argv)

    scripts = discover()
    names = [p.stem for p in scripts]
    unknown = sorted(set(args.only or []) - set(names)) + sorted(set(args.skip) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; found: {', '.join(names)}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [p for p in scripts if (not args.only or p.stem in args.only) and p.stem not in args.skip]
    rows = [run_one(p, args.quick, args.timeout, extra) for p in chosen]

    print("\n| benchmark | status | seconds | result | summary |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['status']} | {r['seconds']} | {r['result'] or ''} | {_format_summary(r.get('summary'))} |")
    return 0 if all(r["status"].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
