#!/usr/bin/python3
"""PyTorch side of bench/train-step.ts: export torchvision models to ONNX and time PyTorch training steps.

Benchmark / fixture tooling only: Graft never imports torch at run time. Run it with Debian's
interpreter (/usr/bin/python3, which has python3-torch 1.13 and python3-torchvision 0.14), not a
pyenv/venv python.

Modes
  --export-only            export the models that are missing from --export-dir, print JSON, exit.
  (default)                export if missing, then time --warmup + --iters training steps per model
                           and print one JSON object with the per-step times.
  --serve                  export if missing, print {"ready": ...} and answer JSON-lines requests on
                           stdin, so the caller can interleave PyTorch steps with its own measurements:
                             {"model": "resnet18", "iters": 1}        -> {"model": ..., "ms": [...]}
                             {"model": "resnet18", "warmup": 2}       -> {"model": ..., "ms": [], ...}
                             {"quit": true}                           -> exits

A training step is: zero_grad, forward, cross-entropy against int64 labels, backward, optimizer
step (AdamW lr 1e-3 by default, as Graft's Trainer), batch of random 3×S×S images.

BatchNorm (--bn): 'batch' trains with batch statistics (model.train(), PyTorch's default), 'frozen'
keeps BatchNorm layers in eval mode (running statistics) while still training their affine
parameters — the same two modes as Graft's compileTraining({batchNorm}). Dropout layers are kept in
eval mode so both sides compute the same graph (the ONNX export has no dropout).
"""
import argparse
import json
import os
import sys
import time
import warnings

MODELS = ("mobilenetv2", "resnet18")
# <repo>/.graft-cache/bench/models (the repository ignores /.graft-cache/).
DEFAULT_EXPORT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".graft-cache", "bench", "models")


def build(name, seed):
    import torch
    import torchvision

    torch.manual_seed(seed)
    if name == "mobilenetv2":
        model = torchvision.models.mobilenet_v2(weights=None)
    elif name == "resnet18":
        model = torchvision.models.resnet18(weights=None)
    else:
        raise SystemExit(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    # A fresh BatchNorm has weight 1, bias 0, mean 0, var 1 in every layer; the ONNX exporter
    # deduplicates equal initializers, which would tie all BN layers (and their statistics) to one
    # tensor through Identity nodes. Give them distinct, plausible "pretrained-like" values instead.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def onnx_path(export_dir, name, size, opset):
    return os.path.join(export_dir, f"{name}-{size}-opset{opset}.onnx")


def export(model, name, args):
    """Export in eval mode, BatchNormalization kept as nodes (not folded into Conv), dynamic batch."""
    import torch

    path = onnx_path(args.export_dir, name, args.size, args.opset)
    if os.path.exists(path) and not args.force_export:
        return path, False
    os.makedirs(args.export_dir, exist_ok=True)
    model.eval()
    x = torch.randn(1, 3, args.size, args.size)
    tmp = path + ".tmp-export"
    warnings.filterwarnings("ignore", message=".*constant folding.*")
    # TrainingMode.PRESERVE with an eval-mode model exports inference-mode BatchNormalization but
    # skips the eval peephole that folds BN into the preceding Conv (TrainingMode.EVAL would fold
    # it, and the training graph would then have no BatchNorm to train, unlike PyTorch's model).
    torch.onnx.export(
        model,
        x,
        tmp,
        opset_version=args.opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=True,
    )
    os.replace(tmp, path)
    return path, True


def set_modes(model, bn):
    import torch.nn as nn

    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
        if bn == "frozen" and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Runner:
    """One model, optimizer and fixed batch; step() runs one timed training step."""

    def __init__(self, name, args):
        import torch
        import torch.nn.functional as F

        self.torch = torch
        self.F = F
        self.name = name
        self.model = build(name, args.seed)
        self.onnx, self.exported = export(self.model, name, args)
        set_modes(self.model, args.bn)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.param_count = sum(p.numel() for p in params)
        if args.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=args.lr)
        else:
            self.opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
        g = torch.Generator().manual_seed(args.seed + 1)
        self.x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
        self.y = torch.randint(0, 1000, (args.batch,), generator=g)
        self.steps = 0
        self.last_loss = None
        # --clock cpu: this process's CPU time (all its threads), steadier than wall time on a busy machine
        self.clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def step(self):
        t0 = self.clock()
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        ms = (self.clock() - t0) * 1000.0
        self.last_loss = float(loss.detach())
        self.steps += 1
        return ms

    def info(self):
        return {"model": self.name, "onnx": self.onnx, "exported": self.exported, "params": self.param_count}


def median(v):
    s = sorted(v)
    n = len(s)
    if n == 0:
        return None
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: mobilenetv2,resnet18")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("GRAFT_THREADS", "2")))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--opset", type=int, default=17, choices=range(13, 18), metavar="13..17")
    ap.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bn", choices=("batch", "frozen"), default="batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export-dir", default=DEFAULT_EXPORT_DIR)
    ap.add_argument("--force-export", action="store_true", help="re-export even if the file exists")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="time steps by wall clock or process CPU time")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch, "size": args.size,
           "bn": args.bn, "optimizer": args.optimizer, "clock": args.clock}

    if args.export_only:
        out = []
        for n in names:
            path, fresh = export(build(n, args.seed), n, args)
            out.append({"model": n, "onnx": path, "exported": fresh})
        emit({"exports": out, **env})
        return

    runners = {}
    for n in names:
        runners[n] = Runner(n, args)

    if args.serve:
        emit({"ready": True, "models": [r.info() for r in runners.values()], **env})
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                if req.get("quit"):
                    break
                r = runners[req["model"]]
                for _ in range(int(req.get("warmup", 0))):
                    r.step()
                ms = [r.step() for _ in range(int(req.get("iters", 0)))]
                emit({"model": r.name, "ms": ms, "loss": r.last_loss, "steps": r.steps})
            except Exception as e:  # report and keep serving
                emit({"error": f"{type(e).__name__}: {e}"})
        return

    results = []
    for r in runners.values():
        for _ in range(args.warmup):
            r.step()
        ms = [r.step() for _ in range(args.iters)]
        med = median(ms)
        results.append({**r.info(), "ms": ms, "median_ms": med, "images_per_s": args.batch * 1000.0 / med if med else None,
                        "loss": r.last_loss})
    emit({"results": results, **env})


if __name__ == "__main__":
    main()
