"""Trainings per hour of the NOS ConvNet on CIFAR-shaped data: one model per worker against K batched.

Issue 16, part 2. The child network is NOS's ConvNet (two 3x3 convs of 32 filters, batch 100) on random
3x32x32 tensors (throughput does not depend on content), trained by the real code paths with one lr each:

* **one model per worker**: `child_tasks.train.train`, one training after another, in W worker processes
  sharing the device, as Ray's fractional-GPU workers do (``gpu_fraction`` 1, 0.5, 0.25: W = 1, 2, 4);
  W = 1 runs in this process;
* **batched**: `child_tasks.batched.train_batch` with K rules at once (K = 4, 16, 64, 256 on a GPU).

Each configuration trains the same proxy budget (``--n-train`` images, ``--epochs``, a validation and a
test pass) with rules cycling through the known ones, and reports trainings per hour, model-steps per
second, an estimate of full NOS evaluations per hour (configs/cifar10_convnet.yaml: 6 short runs of half
an epoch and one run of 5 epochs of 450 steps, 3375 steps, its validation passes not counted), peak device
memory (torch.cuda.max_memory_allocated) and the GPU's utilisation sampled during the run (pynvml or
nvidia-smi; "n/a" without either), and the ratio to the W = 1 reference measured in the same run. A K that
runs out of memory is reported as not fitting, and larger ones are skipped.

    python benchmarks/gpu_throughput.py                       # CUDA if present, else CPU with small K
    python benchmarks/gpu_throughput.py --device cpu --ks 1 8 # the CPU figures (one thread)
    python benchmarks/gpu_throughput.py --json out.json       # the table as JSON too

On CPU, torch runs one thread (a search worker's setting) and K defaults to 1, 4, 8, about a minute in
all. The machine may be shared: only ratios within one run are comparable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from child_tasks.batched import train_batch  # noqa: E402
from child_tasks.config import TaskConfig, load_task_config, override  # noqa: E402
from child_tasks.image_data import ImageData  # noqa: E402
from child_tasks.train import train  # noqa: E402

RULES = ["powersign", "addsign", "adam", "sgd", "momentum", "rmsprop", "exp(sign(g) * sign(m)) * g",
         "sign(g) * sqrt(abs(g))"]
NOS_STEPS = 6 * 225 + (2250 - 225)  # cifar10_convnet.yaml: 6 short runs, then the chosen lr to 5 epochs


def proxy(n_train: int, n_eval: int, epochs: int, device: str) -> tuple[TaskConfig, ImageData]:
    """The cifar10_convnet task on random CIFAR-shaped tensors, one lr, no time limit."""
    config = override(load_task_config("cifar10_convnet"), {
        "epochs": epochs, "lr_grid": [0.01], "time_limit_s": None, "eval_batch_size": 500})
    gen = torch.Generator().manual_seed(0)
    splits = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        splits[f"x_{split}"] = torch.randn(n, 3, 32, 32, generator=gen).to(device)
        splits[f"y_{split}"] = torch.randint(0, 10, (n,), generator=gen).to(device)
    return config, ImageData(name="random-cifar", num_classes=10, augment=False, **splits)


class Utilisation:
    """The GPU's utilisation (percent), sampled every 0.2 s in a thread while in the `with` block."""

    def __init__(self, device: str) -> None:
        self.samples: list[float] = []
        self.read = None if device != "cuda" else _nvml_reader() or _smi_reader()
        self._stop = threading.Event()

    def __enter__(self) -> Utilisation:
        if self.read is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.read is not None:
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(self.read()))
            except Exception:  # (a failed sample is a missing sample)
                pass

    def text(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{statistics.fmean(self.samples):.0f}% (max {max(self.samples):.0f}%)"


def _nvml_reader():  # noqa: ANN202
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except Exception:
        return None


def _smi_reader():  # noqa: ANN202
    if shutil.which("nvidia-smi") is None:
        return None
    index = str(torch.cuda.current_device())

    def read() -> float:
        out = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0])
    return read


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def one_per_worker(args: argparse.Namespace, config: TaskConfig, data: ImageData) -> dict[str, Any]:
    """W = 1, in this process: trainings one after another for at least ``--seconds``."""
    train(RULES[0], config, seed=0, data=data, threads=1, device=args.device)  # warm-up
    _sync(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    done, start = 0, time.perf_counter()
    with Utilisation(args.device) as util:
        while done == 0 or time.perf_counter() - start < args.seconds:
            train(RULES[done % len(RULES)], config, seed=0, data=data, threads=1, device=args.device)
            done += 1
        _sync(args.device)
    return _row("1 model/worker, W=1", done, time.perf_counter() - start, config, data, args, util)


def _worker(rank: int, args: argparse.Namespace, barrier: Any, queue: Any) -> None:
    """One of W processes sharing the device: warm up, wait for all, train for ``--seconds``."""
    torch.set_num_threads(1)
    config, data = proxy(args.n_train, args.n_eval, args.epochs, args.device)
    train(RULES[rank % len(RULES)], config, seed=0, data=data, threads=1, device=args.device)
    _sync(args.device)
    gpu = args.device == "cuda"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    barrier.wait()
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < args.seconds:
        train(RULES[(rank + done) % len(RULES)], config, seed=0, data=data, threads=1, device=args.device)
        done += 1
    _sync(args.device)
    queue.put((done, start, time.perf_counter(), torch.cuda.max_memory_allocated() if gpu else None))


def several_per_device(args: argparse.Namespace, workers: int, config: TaskConfig,
                       data: ImageData) -> dict[str, Any]:
    """W worker processes on one device (Ray's fractional GPUs): their trainings per hour together."""
    ctx = torch.multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, args, barrier, queue)) for r in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    with Utilisation(args.device) as util:
        reports = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    done = sum(r[0] for r in reports)
    seconds = max(r[2] for r in reports) - min(r[1] for r in reports)
    row = _row(f"1 model/worker, W={workers}", done, seconds, config, data, args, util)
    if args.device == "cuda":
        row["memory_mib"] = max(r[3] for r in reports) / 2**20  # per process
    return row


def batched(args: argparse.Namespace, k: int, config: TaskConfig, data: ImageData) -> dict[str, Any]:
    """K rules trained at once by train_batch, repeated for at least ``--seconds``."""
    rules = [RULES[i % len(RULES)] for i in range(k)]
    train_batch(rules[:min(k, 2)], config, seed=0, data=data, device=args.device)  # warm-up
    _sync(args.device)
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    done, start = 0, time.perf_counter()
    with Utilisation(args.device) as util:
        while done == 0 or time.perf_counter() - start < args.seconds:
            results = train_batch(rules, config, seed=0, data=data, device=args.device, split_on_oom=False)
            done += len(results)
        _sync(args.device)
    return _row(f"batched, K={k}", done, time.perf_counter() - start, config, data, args, util)


def _row(name: str, done: int, seconds: float, config: TaskConfig, data: ImageData, args: argparse.Namespace,
         util: Utilisation) -> dict[str, Any]:
    steps = len(data.y_train) // config.batch_size * config.epochs
    return {"config": name, "trainings": done, "seconds": seconds, "per_hour": 3600 * done / seconds,
            "model_steps_per_s": done * steps / seconds,
            "nos_per_hour": 3600 * done * steps / seconds / NOS_STEPS,
            "memory_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
            "utilisation": util.text()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--ks", type=int, nargs="+", help="batch sizes K (default: 4 16 64 256 on a GPU, "
                        "1 4 8 on CPU)")
    parser.add_argument("--workers", type=int, nargs="+", help="one-model workers per device to compare "
                        "(default: 1 2 4 on a GPU, 1 on CPU)")
    parser.add_argument("--n-train", type=int, help="training images (default 5000 on a GPU, 500 on CPU)")
    parser.add_argument("--n-eval", type=int, help="validation and test images (default 1000 / 200)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seconds", type=float, help="least time per configuration (default 20 / 10)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    gpu = args.device == "cuda"
    args.ks = args.ks or ([4, 16, 64, 256] if gpu else [1, 4, 8])
    args.workers = args.workers or ([1, 2, 4] if gpu else [1])
    args.n_train = args.n_train or (5000 if gpu else 500)
    args.n_eval = args.n_eval or (1000 if gpu else 200)
    args.seconds = args.seconds if args.seconds is not None else (20.0 if gpu else 10.0)
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name() if gpu else f"CPU, 1 thread (torch {torch.__version__})"
    config, data = proxy(args.n_train, args.n_eval, args.epochs, args.device)
    steps = args.n_train // config.batch_size * args.epochs
    print(f"device: {name}; proxy training: {steps} steps of batch {config.batch_size} on 3x32x32, "
          f"{args.n_eval} validation and test images; NOS evaluation = {NOS_STEPS} steps", flush=True)
    rows = []
    for w in args.workers:
        rows.append(one_per_worker(args, config, data) if w == 1
                    else several_per_device(args, w, config, data))
        _print(rows[-1], rows[0])
    for k in args.ks:
        try:
            rows.append(batched(args, k, config, data))
        except torch.OutOfMemoryError:
            print(f"batched, K={k}: does not fit in the device's memory; larger K skipped", flush=True)
            rows.append({"config": f"batched, K={k}", "fits": False})
            break
        _print(rows[-1], rows[0])
    fitting = [r for r in rows if r.get("fits", True) and r["config"].startswith("batched")]
    if fitting:
        best = max(fitting, key=lambda r: r["per_hour"])
        print(f"best: {best['config']} at {best['per_hour'] / rows[0]['per_hour']:.1f} x one model per "
              f"worker (W=1); largest K run: {fitting[-1]['config'].split('=')[1]}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows}, indent=1))


def _print(row: dict[str, Any], reference: dict[str, Any]) -> None:
    memory = f"{row['memory_mib']:.0f} MiB" if row.get("memory_mib") is not None else "n/a"
    ratio = row["per_hour"] / reference["per_hour"]
    print(f"{row['config']:<22} {row['per_hour']:>10.0f} trainings/h  {row['model_steps_per_s']:>8.1f} "
          f"model-steps/s  ~{row['nos_per_hour']:>7.2f} NOS evaluations/h  x{ratio:>5.2f}"
          f"  memory {memory}  GPU util {row['utilisation']}  ({row['trainings']} in {row['seconds']:.1f} s)",
          flush=True)


if __name__ == "__main__":
    main()
