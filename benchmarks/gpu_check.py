"""The GPU check (issue 16, part 3): everything in the search's GPU path, in one run of a few minutes.

GPU machines are lent only at times and nothing may depend on one, so this is prepared and tested on CPU
and run whenever a GPU is at hand. Its parts, each in its own process with a time limit, so that one
failing or hanging never hides the others:

1. ``tests``: the CUDA tests (``-k cuda`` of the files that hold them: they skip without CUDA) and the
   batched-training tests;
2. ``parity``: RuleOptimizer on CUDA against CPU on every known rule (dsl.known), multi-tensor
   (foreach) and fused paths, 30 full-batch float64 steps of a small network, rtol 1e-6 as the CUDA test;
   and `train_batch` on CUDA against `train` on CUDA (digits, four rules);
3. ``search``: a tiny ``nos search`` (random search, 8 trainings) with GPU workers (``gpu_fraction``
   0.25: four workers on the GPU) on a generated CIFAR-10 archive, and what the store holds after it;
4. ``throughput``: benchmarks/gpu_throughput.py (one model per worker, W = 1, 2, 4, against batched
   K = 4, 16, 64, 256), its table also as JSON.

Without CUDA the GPU-only parts (parity, search) say so and are skipped, the tests run (their CUDA cases
skip) and the throughput benchmark runs its CPU mode with small K. ``--search-on-cpu`` runs the tiny
search on CPU workers anyway (to check the command). All output goes to the terminal and to
``gpu_check.log`` in ``$OUT`` (or ``--out``; else the current directory), with the throughput JSON and the
search's run directory beside it.

    python benchmarks/gpu_check.py                     # the whole check (about 8-10 min on an H100)
    python benchmarks/gpu_check.py --parts tests parity
    OUT=/tmp/check python benchmarks/gpu_check.py --search-on-cpu
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PARTS = ("tests", "parity", "search", "throughput")
LIMITS = {"tests": 300, "parity": 420, "search": 420, "throughput": 600}  # seconds per part
CUDA_TEST_FILES = ["tests/test_optimizer.py", "tests/test_discovered_rules.py", "tests/test_datasets.py"]


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- the parts, each run in a child process: python gpu_check.py --part NAME ---------------------------

def part_tests(args: argparse.Namespace) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not has_cuda():
        print("no CUDA device: the CUDA tests will report as skipped", flush=True)
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda", *CUDA_TEST_FILES],
                         cwd=ROOT, env=env)
    rc = rc if rc != 5 else 0  # 5: nothing collected (no test matched): not a failure here
    return rc or subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/test_batched.py"], cwd=ROOT,
                                 env=env)


def part_parity(args: argparse.Namespace) -> int:
    device = args.parity_device
    if device == "cuda" and not has_cuda():
        print("PART SKIPPED: no CUDA device (torch.cuda.is_available() is False): nothing to compare "
              "with CPU")
        return 0
    import torch

    from dsl import known_rules
    from dsl.optimizer import RuleOptimizer
    from tests.reference_optimizers import CASES, batch, small_network, train

    failures = 0
    x, y = (t.to(device) for t in batch())
    rules = list(known_rules().items())[:args.parity_rules]
    for path, options in (("foreach", dict(foreach=True)), ("fused", dict(fused=True))):
        for name, rule in rules:
            case = CASES[name]
            begin = time.perf_counter()
            cpu_model = small_network()
            # The CPU reference is the multi-tensor path (the fused one equals it on CPU: tests/).
            expected = train(cpu_model, RuleOptimizer(cpu_model.parameters(), rule, lr=case.lr, foreach=True,
                                                      **case.hyper), steps=30)
            model = small_network().to(device)
            opt = RuleOptimizer(model.parameters(), rule, lr=case.lr, **options, **case.hyper)
            for _ in range(30):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x).double(), y).backward()
                opt.step()
            got = torch.cat([p.detach().flatten() for p in model.parameters()]).cpu()
            error = ((got - expected).abs() / expected.abs().clamp_min(1e-12)).max().item()
            try:
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-10)
                verdict = "ok"
            except AssertionError:
                verdict, failures = "MISMATCH", failures + 1
            print(f"parity {path:<8} {name:<14} max rel error {error:.2e}  {verdict}  "
                  f"({time.perf_counter() - begin:.1f} s)", flush=True)
    return failures + batched_parity(device)


def batched_parity(device: str) -> int:
    """train_batch on the device against train on it: the same results within float tolerance."""
    import torch

    from child_tasks.batched import train_batch
    from child_tasks.train import train
    from tests.child_task_helpers import tiny_digits
    from tests.test_batched import assert_same

    if device == "cuda":  # TF32 rounds to 10 bits, differently in grouped and plain convs: compare in fp32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        print("batched parity on cuda with TF32 off (cudnn and matmul)")
    cfg = tiny_digits(lr_grid=[0.01, 0.1, 1.0])
    rules = ["powersign", "torch:adam", "sgd", "g * 1e6"]
    together = train_batch(rules, cfg, seed=1, device=device)
    failures = 0
    for rule, result in zip(rules, together, strict=True):
        alone = train(rule, cfg, seed=1, device=device)
        try:
            assert_same(alone, result)
            verdict = "ok"
        except AssertionError as err:
            verdict, failures = f"MISMATCH {err}", failures + 1
        print(f"batched on {device} {rule:<12} {result.status:<9} reward {result.reward:7.3f} "
              f"(alone {alone.reward:7.3f})  {verdict}", flush=True)
    return failures


def part_search(args: argparse.Namespace) -> int:
    if not has_cuda() and not args.search_on_cpu:
        print("PART SKIPPED: no CUDA device: the search's GPU workers cannot start (--search-on-cpu runs the "
              "same search on CPU workers)")
        return 0
    import tests.test_cifar10 as cifar_files

    out = Path(args.out)
    cifar_files.PER_BATCH = 200  # 1000 training images, 200 test: a small archive in CIFAR-10's format
    archive = cifar_files.write_archive(out / "cifar-10-python.tar.gz", cifar_files.batch_files())
    run_dir = out / "search_run"
    overrides = {"controller.kind": "random", "controller.batch_size": 8, "search.budget": 8,
                 "search.gpu_fraction": 0.25, "search.cpus_per_worker": 1, "confirm.top_k": 0,
                 "wandb.mode": "disabled", "task_overrides.epochs": 1, "task_overrides.batch_size": 50,
                 "task_overrides.data.val_size": 200, "task_overrides.lr_grid": "[0.01, 0.1]",
                 "task_overrides.short_run_epochs": 0.5}
    if not has_cuda():
        overrides["search.workers"] = 2
    command = ["nos", "search", "--config", "configs/cifar10_nos.yaml", "--run-dir", str(run_dir),
               "--records-dir", str(out / "records"), "--no-progress"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    print("$ NOS_CIFAR10=" + str(archive) + " " + " ".join(command), flush=True)
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "NOS_CIFAR10": str(archive)})
    most: list[str] = []  # the most processes seen on the GPU at once: the workers
    while proc.poll() is None:
        if has_cuda():
            apps = _gpu_processes()
            most = apps if len(apps) > len(most) else most
        time.sleep(2)
    rc = proc.returncode
    if has_cuda():
        print(f"processes on the GPU at once during the search (nvidia-smi), at most {len(most)}: {most}")
    store = run_dir / "results.sqlite"
    if store.exists():
        with sqlite3.connect(store) as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            print(f"store {store}: tables {tables}")
            for table in tables:
                columns = [r[1] for r in db.execute(f"pragma table_info({table})")]
                count = db.execute(f"select count(*) from {table}").fetchone()[0]
                line = f"  {table}: {count} rows"
                if "status" in columns:
                    query = f"select status, count(*) from {table} group by status"
                    line += f", by status {dict(db.execute(query).fetchall())}"
                print(line)
    else:
        print(f"no store at {store}")
    return rc


def _gpu_processes() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def part_throughput(args: argparse.Namespace) -> int:
    command = [sys.executable, "benchmarks/gpu_throughput.py",
               "--json", str(Path(args.out) / "gpu_throughput.json")]
    if has_cuda():
        command += ["--seconds", "10"]
    else:
        print("no CUDA device: the benchmark's CPU mode (one thread, small K)", flush=True)
        command += ["--ks", "1", "4", "--n-train", "200", "--seconds", "0"]
    return subprocess.call(command, cwd=ROOT)


# --- the driver ----------------------------------------------------------------------------------------

def run_part(name: str, args: argparse.Namespace, log) -> tuple[str, str, float]:  # noqa: ANN001
    """Run one part in a child process, its output to the terminal and the log; its outcome."""
    command = [sys.executable, __file__, "--part", name, "--out", str(args.out)]
    if args.search_on_cpu:
        command.append("--search-on-cpu")
    command += ["--parity-device", args.parity_device]
    if args.parity_rules:
        command += ["--parity-rules", str(args.parity_rules)]
    banner = f"===== {name} ({time.strftime('%H:%M:%S')}, limit {LIMITS[name]} s) ====="
    print(banner, flush=True)
    log.write(banner + "\n")
    begin = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    deadline = begin + LIMITS[name]
    skipped = False
    timed_out = False
    for line in proc.stdout:  # the child's lines as they come
        sys.stdout.write(line)
        log.write(line)
        log.flush()
        skipped |= line.startswith("PART SKIPPED")
        if time.perf_counter() > deadline:
            timed_out = True
            os.killpg(proc.pid, 15)
            break
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 15)
        rc = proc.wait()
    seconds = time.perf_counter() - begin
    outcome = ("TIMEOUT" if timed_out else "skipped (no CUDA)" if skipped and rc == 0
               else "ok" if rc == 0 else f"FAILED (exit {rc})")
    return name, outcome, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "."),
                        help="where the log and outputs go (default: $OUT, else the current directory)")
    parser.add_argument("--search-on-cpu", action="store_true", help="run the tiny search without CUDA too")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # one part, in a child process
    # A dry run of the parity part without CUDA: CPU against CPU, on the first N rules.
    parser.add_argument("--parity-device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--parity-rules", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        sys.exit(globals()[f"part_{args.part}"](args))
    with open(args.out / "gpu_check.log", "a", encoding="utf-8") as log:
        header = _environment()
        print(header, flush=True)
        log.write(header + "\n")
        summary = [run_part(name, args, log) for name in args.parts]
        text = "===== summary =====\n" + "\n".join(f"{n:<11} {o:<18} {s:6.1f} s" for n, o, s in summary)
        print(text)
        log.write(text + "\n")
    print(f"log: {args.out / 'gpu_check.log'}")
    sys.exit(0 if all(o == "ok" or o.startswith("skipped") for _, o, _ in summary) else 1)


def _environment() -> str:
    import torch

    lines = [f"===== GPU check {time.strftime('%Y-%m-%d %H:%M:%S')} =====",
             f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA build {torch.version.cuda}",
             f"git {_git('rev-parse', '--short', 'HEAD')}"
             + (" (modified files)" if _git("status", "--porcelain") else "")]
    if torch.cuda.is_available():
        lines.append(f"device: {torch.cuda.get_device_name()} ({torch.cuda.device_count()} visible), "
                     f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
        try:
            query = "--query-gpu=name,driver_version,memory.total,utilization.gpu"
            smi = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            lines.append(f"nvidia-smi: {smi.stdout.strip()}")
        except (OSError, subprocess.TimeoutExpired):
            lines.append("nvidia-smi: n/a")
    else:
        lines.append("device: no CUDA device: the GPU-only parts (parity, search) are skipped")
    lines.append(f"CPUs: {os.cpu_count()}")
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


if __name__ == "__main__":
    main()
