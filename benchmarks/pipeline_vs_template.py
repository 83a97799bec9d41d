"""Benchmark: flywheel's taxi pipeline vs the vanilla TFX taxi template, cold and on an unchanged rerun.

In one run, on this machine, both on the LocalDagRunner with the same data and 1000 train steps:
  - the TFX template (`tfx template copy --model=taxi`, every commented-out components.append(...)
    enabled: 8 components),
  - `flywheel run taxi` (9 components, including ingestion with quarantine and the validation gate).
Prints wall times, the ratios (targets: cold <= 1.0x the template; unchanged rerun <= 10% of cold)
and a per-component breakdown.

With --rows N both read the same span of N rows written by `flywheel simulate taxi --spans 1 --rows N --files 8`,
cold only, and each side also gets its peak memory: the resident
set sizes summed over its process tree, sampled every 0.2 s, overall and while each component ran (the local runner
runs every component in one process, so a component's figure includes what the earlier ones left allocated).
Usage: python benchmarks/pipeline_vs_template.py [--train-steps N] [--rows N [--files K]] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DONE = re.compile(r"✓ (\S+) ([\d.]+) s")
_START = re.compile(r"▶ (\S+) \.\.\.")
# The same role on each side (template component, flywheel component), in pipeline order.
ROLES = (("read CSV", "CsvExampleGen", "Ingest"), ("statistics", "StatisticsGen", "StatisticsGen"),
         ("schema", "SchemaGen", "ImportSchemaGen"), ("validation", "ExampleValidator", "ExampleValidator"),
         ("gate", None, "DataGate"), ("transform", "Transform", "Transform"), ("train", "Trainer", "Trainer"),
         ("evaluate", "Evaluator", "Evaluate"), ("push", "Pusher", "Push"))

_TEMPLATE_DRIVER = """
import os, sys
sys.path.insert(0, os.getcwd())
from flywheel import quiet
quiet.quiet_environment(False)
import tfx
quiet.install(False)
import local_runner
local_runner.run()
"""


def _timed(cmd: list[str], cwd: str, env: dict | None = None) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def make_template(workdir: str, train_steps: int, data_path: str | None = None) -> str:
    dest = os.path.join(workdir, "template")
    subprocess.run([os.path.join(BIN, "tfx"), "template", "copy", "--model=taxi", "--pipeline_name=template",
                    f"--destination_path={dest}"], check=True, capture_output=True)
    path = os.path.join(dest, "pipeline", "pipeline.py")
    with open(path) as f:
        text = f.read()
    text = re.sub(r"^(\s*)# (components\.append\()", r"\1\2", text, flags=re.M)
    with open(path, "w") as f:
        f.write(text)
    configs = os.path.join(dest, "pipeline", "configs.py")
    with open(configs) as f:
        text = f.read()
    with open(configs, "w") as f:
        f.write(re.sub(r"^TRAIN_NUM_STEPS = \d+", f"TRAIN_NUM_STEPS = {train_steps}", text, flags=re.M))
    if data_path is not None:
        runner = os.path.join(dest, "local_runner.py")
        with open(runner) as f:
            text = f.read()
        with open(runner, "w") as f:
            f.write(re.sub(r"^DATA_PATH = .*$", f"DATA_PATH = {data_path!r}", text, count=1, flags=re.M))
    with open(os.path.join(dest, "driver.py"), "w") as f:
        f.write(_TEMPLATE_DRIVER)
    return dest


def breakdown(stdout: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in _DONE.finditer(stdout)}


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Trace:
    """One side's run: wall seconds, (time, tree RSS) samples and each component's (start, end) times."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.samples: list[tuple[float, int]] = []
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def peak(self, name: str | None = None) -> int:
        """The peak tree RSS over the run, or while component `name` ran (with the samples either side of it)."""
        if name is None:
            return max((rss for _, rss in self.samples), default=0)
        end = self.ended[name]
        lo, hi = self.started.get(name, end - self.durations[name]) - 0.2, end + 0.2
        return max((rss for t, rss in self.samples if lo <= t <= hi), default=0)


def traced(cmd: list[str], cwd: str, env: dict) -> Trace:
    """Runs cmd, sampling its process tree's RSS every 0.2 s and timing the progress lines as they come."""
    trace, started = Trace(), time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=errors, text=True,
                                env={**os.environ, **env})
        watched = psutil.Process(proc.pid)

        def sample() -> None:
            while proc.poll() is None:
                try:
                    trace.samples.append((time.monotonic() - started, _tree_rss(watched)))
                except psutil.NoSuchProcess:
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        lines = []
        for line in proc.stdout:
            lines.append(line)
            now = time.monotonic() - started
            if m := _START.search(line):
                trace.started[m.group(1)] = now
            elif m := _DONE.search(line):
                trace.ended[m.group(1)], trace.durations[m.group(1)] = now, float(m.group(2))
        proc.wait()
        sampler.join()
        trace.seconds = time.monotonic() - started
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}):\n{''.join(lines)}\n"
                             f"{errors.read()}")
    return trace


def simulate(workdir: str, rows: int, files: int) -> tuple[str, float]:
    """The span folder of `rows` rows in `files` files written by `flywheel simulate`, and the seconds it took."""
    out = os.path.join(workdir, "spans")
    seconds, _ = _timed([os.path.join(BIN, "flywheel"), "simulate", "taxi", "--out", out, "--spans", "1",
                         "--rows", str(rows), "--files", str(files)], REPO)
    return os.path.join(out, "span-1"), seconds


def _gb(rss: int) -> str:
    return f"{rss / 2**30:.2f}" if rss else "—"


def report_rows(template: Trace, ours: Trace) -> None:
    """Per role: each side's seconds and peak tree RSS while it ran; then the totals."""
    print(f"{'':12}{'template component':>20}{'s':>8}{'GB':>7}{'flywheel component':>20}{'s':>8}{'GB':>7}")
    for role, theirs, mine in ROLES:
        t = template.durations.get(theirs) if theirs else None
        f = ours.durations.get(mine)
        print(f"{role:12}{theirs or '—':>20}{'—' if t is None else f'{t:.1f}':>8}"
              f"{_gb(template.peak(theirs)) if t is not None else '—':>7}"
              f"{mine:>20}{'—' if f is None else f'{f:.1f}':>8}{_gb(ours.peak(mine)) if f is not None else '—':>7}")
    print(f"{'whole run':12}{'':>20}{template.seconds:8.1f}{_gb(template.peak()):>7}"
          f"{'':>20}{ours.seconds:8.1f}{_gb(ours.peak()):>7}")
    print(f"ratio flywheel/template: time {ours.seconds / template.seconds:.2f}x, "
          f"peak memory {ours.peak() / template.peak():.2f}x")


def main_rows(args: argparse.Namespace, workdir: str, env: dict) -> None:
    """--rows: both pipelines cold on one simulated span, per component time and peak memory."""
    data, seconds = simulate(workdir, args.rows, args.files)
    print(f"data: {args.rows:,} simulated rows in {args.files} files ({seconds:.1f} s to write); "
          f"train steps {args.train_steps}; LocalDagRunner; load average before: {_load()}", flush=True)
    template = traced([sys.executable, "driver.py"], make_template(workdir, args.train_steps, data), env)
    print(f"template done in {template.seconds:.1f} s; load average: {_load()}", flush=True)
    ours = traced([os.path.join(BIN, "flywheel"), "run", "taxi", "--data", os.path.dirname(data), "--output-dir",
                   os.path.join(workdir, "flywheel"), "--train-steps", str(args.train_steps)], REPO, env)
    print(f"flywheel done in {ours.seconds:.1f} s; load average after: {_load()}")
    report_rows(template, ours)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=None,
                        help="simulated rows instead of the shipped 15,002 (cold runs, with peak memory)")
    parser.add_argument("--files", type=int, default=8, help="files the simulated span is written in (with --rows)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="flywheel-bench-")
    env = {"PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args.rows is not None:
        try:
            main_rows(args, workdir, env)
        finally:
            _cleanup(workdir, args.keep)
        return
    template = make_template(workdir, args.train_steps)
    results = {}
    results["template cold"] = _timed([sys.executable, "driver.py"], template, env)
    results["template rerun"] = _timed([sys.executable, "driver.py"], template, env)
    ours = os.path.join(workdir, "flywheel")
    run = [os.path.join(BIN, "flywheel"), "run", "taxi", "--output-dir", ours, "--train-steps", str(args.train_steps)]
    results["flywheel cold"] = _timed(run, REPO)
    results["flywheel rerun"] = _timed(run, REPO)

    t_cold, t_re = results["template cold"][0], results["template rerun"][0]
    f_cold, f_re = results["flywheel cold"][0], results["flywheel rerun"][0]
    print(f"train steps: {args.train_steps}; data: taxi CSV shipped in tfx (15,002 rows); LocalDagRunner")
    print(f"{'':18}{'cold (s)':>10}{'unchanged rerun (s)':>22}{'rerun/cold':>12}")
    print(f"{'TFX template (8)':18}{t_cold:10.1f}{t_re:22.1f}{t_re / t_cold:12.1%}")
    print(f"{'flywheel (9)':18}{f_cold:10.1f}{f_re:22.1f}{f_re / f_cold:12.1%}")
    print(f"ratio flywheel/template: cold {f_cold / t_cold:.2f}x, unchanged rerun {f_re / t_re:.2f}x")
    print("per component, cold (s):")
    tb, fb = breakdown(results["template cold"][1]), breakdown(results["flywheel cold"][1])
    for name in list(tb) + [n for n in fb if n not in tb]:
        print(f"  {name:20}{tb.get(name, float('nan')):>10.1f}{fb.get(name, float('nan')):>10.1f}")
    print(f"  {'sum':20}{sum(tb.values()):>10.1f}{sum(fb.values()):>10.1f}")
    _cleanup(workdir, args.keep)


def _cleanup(workdir: str, keep: bool) -> None:
    if keep:
        print(f"working folder: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
