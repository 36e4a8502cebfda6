"""Cost probe (`python -m densenet bench --probe`): a few timed steps per model in this
environment, so that each cell's time can be predicted before a study runs.

Per model and optimizer: the median time of the step the cells will use (fast on CUDA unless
told otherwise). Per model: eval forward time per image and the time to write a checkpoint.
Once: augmentation time per image. The file also carries the protocol table and the dataset
sizes, so workflow/scripts/predict_cost.py needs nothing from densenet/ (nor torch) to turn
it into per-cell predictions:
    epoch_s = ceil(n_train / batch) * step_ms + n_train * augment_ms_per_img
              + n_test * eval_ms_per_img + checkpoint_ms      (all / 1000)
Per model also the memory peak of its steps, evaluation and checkpoint: the process's resident
set (timing.HostPeak: with the interpreter, the libraries and the images held, whose size the
file records so a cell's larger set can be added) and, on CUDA, the allocator's peak.
"""

import argparse
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from .. import checkpoint, data, envinfo
from ..augment import Normalizer
from ..recipe import PROTOCOLS, default_eval_batch, protocol_sizes, values
from .data_pipeline import ours_epoch
from .runners import Runner, load_images, make_batches, setup
from .timing import HostPeak, summarize, time_calls

__all__ = ["FULL_SIZES", "run_probe", "probe_table"]

# Full split sizes (train, test); the synthetic set's come from data.py.
FULL_SIZES = {
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "synthetic": data.SYNTHETIC_SIZE,
}
TRAIN_BATCH = values()["batch_size"]  # recipe.resolve's default for every protocol


def names(text: Optional[str], default: str) -> List[str]:
    return text.split(",") if text else [default]


def eval_ms_per_img(
    model: torch.nn.Module,
    x_uint8: torch.Tensor,
    mean: Any,
    std: Any,
    device: torch.device,
    batch: int,
) -> float:
    """Median over 2 timed eval forwards of one batch (after one untimed), per image."""
    normalize = Normalizer(mean, std, device)
    xb = normalize(x_uint8[:batch].to(device))
    model.eval()
    with torch.no_grad():
        model(xb)
        ms, _ = time_calls(lambda i: model(xb), 2, device)
    model.train()
    return summarize(ms)["median"] / xb.shape[0]


def storage_mb(*tensors: torch.Tensor) -> float:
    """MiB of memory behind the tensors, a view counting its whole storage (the probe's images
    of a real data set are a slice of the whole loaded training set)."""
    total = 0
    for t in tensors:
        s = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
        total += s.nbytes() if hasattr(s, "nbytes") else s.size() * t.element_size()
    return total / 2.0**20


def checkpoint_ms(runner: Runner) -> float:
    """Time to write this model's checkpoint once (what the trainer writes every epoch)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        checkpoint.save(
            os.path.join(tmp, "checkpoint.pt"),
            {"model": runner.model.state_dict(), "optimizer": runner.optimizer.state_dict()},
        )
        return 1000.0 * (time.perf_counter() - t0)


def augment_ms_per_img(
    x: torch.Tensor,
    y: torch.Tensor,
    mean: Any,
    std: Any,
    device: torch.device,
    batch: int,
    seed: int,
) -> float:
    normalize = Normalizer(mean, std, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    xd, yd = x.to(device), y.to(device)
    ours_epoch(xd, yd, normalize, batch, gen, "official")  # untimed first use
    return 1000.0 * ours_epoch(xd, yd, normalize, batch, gen, "official") / xd.shape[0]


def run_probe(args: argparse.Namespace, log: Callable[[str], None]) -> Dict[str, Any]:
    """The cost probe's record (with its table under "table")."""
    device, flags = setup(args)
    cuda = device.type == "cuda"
    fast = args.fast == "on" or (args.fast == "auto" and cuda)
    models = names(args.models, args.model)  # checked by the parser (names_problem)
    optimizers = names(args.optimizers, args.optimizer)
    eval_batch = args.eval_batch_size or default_eval_batch(device, args.batch_size)
    warmup = args.warmup or (6 if cuda and fast else 1)
    x, y, mean, std, identity = load_images(args, max(2048, eval_batch, 4 * args.batch_size))
    batches = make_batches(x, y, mean, std, device, args.batch_size, 4, args.seed)
    out = {}
    host = HostPeak()
    for model in models:
        host.start()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        entry = {"step_ms": {}, "step_stats": {}, "step_mode": {}}
        for opt in optimizers:
            r = Runner("probe", model, fast, False, device, args, log, optimizer=opt)
            for _ in range(warmup):
                r(batches)
            ms, _ = time_calls(lambda i, r=r: r(batches), args.steps, device)
            entry["step_ms"][opt] = summarize(ms)["median"]
            entry["step_stats"][opt] = summarize(ms)
            entry["step_mode"][opt] = r.step.mode
        entry["eval_ms_per_img"] = eval_ms_per_img(r.model, x, mean, std, device, eval_batch)
        entry["checkpoint_ms"] = checkpoint_ms(r)
        entry["peak_host_mb"] = host.peak_mb()
        entry["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2.0**20 if cuda else None
        out[model] = entry
        del r
    env = {
        "device": device.type,
        "cudnn": args.cudnn,
        "tf32": args.tf32,
        "deterministic": args.deterministic,
        "canary": args.canary,
        "fast": fast,
        "torch": torch.__version__,
        "env_id": args.env_id,
        "gpu": (envinfo.gpu_info() or {}).get("name"),
    }
    res = {
        "kind": "cost-probe",
        "env": env,
        "models": out,
        "augment_ms_per_img": augment_ms_per_img(
            x, y, mean, std, device, args.batch_size, args.seed
        ),
        "batch_size": args.batch_size,
        "eval_batch_size": eval_batch,
        "peak_host_method": host.method,
        "host_data_mb": storage_mb(x, y),
        "host_data_images": int(round(storage_mb(x) * 2.0**20 / (x[0].numel() * x.element_size()))),
        "warmup": warmup,
        "steps": args.steps,
        "protocols": {
            name: {"epochs": e, "n_train": tr, "n_test": te, "batch_size": TRAIN_BATCH}
            for name, (e, tr, te) in ((p, protocol_sizes(p)) for p in PROTOCOLS)
        },
        "dataset_sizes": {name: {"train": tr, "test": te} for name, (tr, te) in FULL_SIZES.items()},
        "flags": flags,
        "environ": envinfo.environ(args.image_ref),
        "config": dict(
            {k: v for k, v in vars(args).items() if k != "command"}, dataset_identity=identity
        ),
    }
    res["table"] = probe_table(res)
    return res


def probe_table(res: Mapping[str, Any]) -> str:
    lines = [
        "cost probe on %s (%s), batch %d"
        % (res["env"]["device"], res["env"]["gpu"] or res["environ"]["platform"], res["batch_size"])
    ]
    for model, e in sorted(res["models"].items()):
        for opt, ms in sorted(e["step_ms"].items()):
            lines.append(
                "  %-20s %-8s %-13s step %9.2f ms  eval %.3f ms/img  ckpt %.0f ms"
                % (model, opt, e["step_mode"][opt], ms, e["eval_ms_per_img"], e["checkpoint_ms"])
            )
        gpu = "" if e["peak_gpu_mb"] is None else ", GPU %.0f MB allocated" % e["peak_gpu_mb"]
        lines.append("  %-20s peak host %.0f MB%s" % (model, e["peak_host_mb"], gpu))
    lines.append("  augmentation %.4f ms/img" % res["augment_ms_per_img"])
    return "\n".join(lines)
