"""Benchmark: flywheel's taxi pipeline vs the vanilla TFX taxi template, cold and on an unchanged rerun.

In one run, on this machine, both on the LocalDagRunner with the same data and 1000 train steps:
  - the TFX template (`tfx template copy --model=taxi`, every commented-out components.append(...)
    enabled: 8 components),
  - `flywheel run taxi` (9 components, including ingestion with quarantine and the validation gate).
Prints wall times, the ratios (targets: cold <= 1.0x the template; unchanged rerun <= 10% of cold)
and a per-component breakdown. Usage: python benchmarks/pipeline_vs_template.py [--train-steps N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DONE = re.compile(r"✓ (\S+) ([\d.]+) s")

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


def make_template(workdir: str, train_steps: int) -> str:
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
    with open(os.path.join(dest, "driver.py"), "w") as f:
        f.write(_TEMPLATE_DRIVER)
    return dest


def breakdown(stdout: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in _DONE.finditer(stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="flywheel-bench-")
    env = {"PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
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
    if args.keep:
        print(f"working folder: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
