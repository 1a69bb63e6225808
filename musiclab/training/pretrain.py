"""Long, resumable training of the flagship: cosine schedule, bf16 autocast, checkpoints every few minutes.

``python -m musiclab train-flagship --data piano=DIR asap=DIR pop909=DIR --run RUN_DIR --out weights/flagship``
builds (or reuses) the corpus, then trains for ``total_steps`` optimiser steps. Every
``checkpoint_minutes`` it writes ``RUN_DIR/checkpoint.safetensors`` (model, AdamW moments, torch RNG)
+ ``checkpoint.json`` (step, data RNG, time spent): the same command resumes the same run
(step, schedule and random streams), so a run can span sessions. ``RUN_DIR/curves.jsonl`` holds
the train and valid losses. At the end the model goes to ``--out`` with its card.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..codecs.barnote import BarNoteCodec
from ..models import build_model
from . import corpus as corpus_mod
from .examples import ExampleConfig, ExampleSampler

VALID_BATCHES = {"continue": 48, "infill": 24, "accompany": 24}  # fixed held-out examples per task


@dataclass
class PretrainConfig:
    run: str  # run folder (checkpoints, curves); keep it outside the work tree
    out: str  # where the finished model goes, e.g. weights/flagship
    data: dict[str, str] = field(default_factory=dict)  # {"piano"|"asap"|"pop909": folder}
    arch: str = "flagship"
    model: dict = field(default_factory=dict)  # overrides of FlagshipConfig
    examples: dict = field(default_factory=dict)  # overrides of ExampleConfig
    batch_size: int = 16  # examples per optimiser step (x 1,024 tokens)
    total_steps: int = 6000
    warmup_steps: int = 300
    lr: float = 1e-3  # peak; cosine down to min_lr at total_steps
    min_lr: float = 1e-4
    weight_decay: float = 0.1  # on matrices only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 200  # steps
    checkpoint_minutes: float = 8.0
    seed: int = 1234
    autocast: bool = True  # bf16 on CPUs that have it, bf16/fp16 on CUDA; fp32 master weights
    max_minutes: float | None = None  # stop (with a checkpoint) after this long in this process
    stop_at: int | None = None  # stop (with a checkpoint) at this step; the schedule still ends at total_steps
    init: str | None = None  # a finished run folder whose model weights start this run (fresh optimiser and schedule)


def lr_at(step: int, c: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine down to ``min_lr`` at ``total_steps``."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    t = min(1.0, (step - c.warmup_steps) / max(1, c.total_steps - c.warmup_steps))
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * t))


def autocast_ctx(device: torch.device, enabled: bool):
    """bf16 autocast where the hardware has it (CPU with AVX512-BF16/AMX, CUDA); else a no-op."""
    if not enabled:
        return torch.autocast(device.type, enabled=False)
    if device.type == "cuda":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dt)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=torch.backends.mkldnn.is_available())


def _optimizer(model, c: PretrainConfig):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, fused=False)


def save_checkpoint(run: Path, model, opt, step: int, rng: np.random.Generator, spent: float, c: PretrainConfig):
    """Model + AdamW moments + torch RNG (safetensors) and the rest (JSON), each written then renamed."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    tensors[f"opt.{names[id(p)]}.{k}"] = st[k].contiguous()
            if "step" in st:
                tensors[f"opt.{names[id(p)]}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    tensors["torch_rng"] = torch.get_rng_state()
    save_file(tensors, run / "checkpoint.safetensors.tmp")
    os.replace(run / "checkpoint.safetensors.tmp", run / "checkpoint.safetensors")
    meta = {"step": step, "rng": rng.bit_generator.state, "spent_seconds": spent, "config": dataclasses.asdict(c)}
    (run / "checkpoint.json.tmp").write_text(json.dumps(meta))
    os.replace(run / "checkpoint.json.tmp", run / "checkpoint.json")


def load_checkpoint(run: Path, model, opt) -> tuple[int, np.random.Generator, float]:
    """Restore what ``save_checkpoint`` wrote; returns (step, data RNG, seconds spent so far)."""
    meta = json.loads((run / "checkpoint.json").read_text())
    t = load_file(run / "checkpoint.safetensors")
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    for n, p in model.named_parameters():
        if f"opt.{n}.exp_avg" in t:
            opt.state[p] = {"step": t[f"opt.{n}.step"][0].clone(), "exp_avg": t[f"opt.{n}.exp_avg"],
                            "exp_avg_sq": t[f"opt.{n}.exp_avg_sq"]}  # fmt: skip
    torch.set_rng_state(t["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    return int(meta["step"]), rng, float(meta["spent_seconds"])


def warm_start(model, init: Path) -> None:
    """Load a run folder's model weights, or a shipped model folder's (model.safetensors), into
    ``model``: strictly the same shape, but for fewer key/value heads (their mean: ``pool_kv_heads``)."""
    init = Path(init)
    if (init / "checkpoint.safetensors").exists():
        t = {k[6:]: v for k, v in load_file(init / "checkpoint.safetensors").items() if k.startswith("model.")}
    elif (init / "model.safetensors").exists():
        t = load_file(init / "model.safetensors")
    else:
        raise ValueError(f"--init {init}: no checkpoint.safetensors or model.safetensors there (expected a "
                         "flagship run folder or a shipped model's folder)")  # fmt: skip
    try:
        hd = model.config.n_embd // model.config.n_head
        model.load_state_dict(pool_kv_heads(t, model.state_dict(), hd), strict=True)
    except RuntimeError as e:
        raise ValueError(f"--init {init}: its model has another shape ({str(e).splitlines()[0]})") from None


def pool_kv_heads(src: dict, dst: dict, head_dim: int) -> dict:
    """``src`` weights for a model shaped as ``dst`` (a state dict), in its dtype: where dst's
    attention has fewer key/value heads (of ``head_dim``), each is the mean of its group of src's
    heads (query heads j*G .. j*G+G-1 share head j: the grouped-query "uptraining" start of Ainslie
    et al. 2023); anything else is taken as it is."""
    out = {}
    for name, w in src.items():
        like = dst.get(name)
        if like is not None and name.endswith(("c_attn.weight", "c_attn.bias")) and like.shape[0] < w.shape[0]:
            C = dst[name[: name.rindex("c_attn")] + "ln_1.weight"].shape[0]  # q rows: the width, either model
            kv_src, n_kv = (w.shape[0] - C) // 2, (like.shape[0] - C) // 2 // head_dim
            q, k, v = w.float().split([C, kv_src, kv_src])
            w = torch.cat([q, *(t.unflatten(0, (n_kv, -1, head_dim)).mean(1).flatten(0, 1) for t in (k, v))])
        out[name] = w.to(like.dtype) if like is not None else w
    return out


def valid_set(sampler: ExampleSampler, seed: int) -> dict[str, np.ndarray]:
    """Fixed, unaugmented held-out examples per task (the same at every evaluation and resume)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in VALID_BATCHES}
    for _ in range(200):
        rows, tasks = sampler.batch(32, rng, augmented=False)
        for r, t in zip(rows, tasks):
            if len(out[t]) < VALID_BATCHES[t]:
                out[t].append(r)
        if all(len(out[t]) >= n for t, n in VALID_BATCHES.items()):
            break
    return {t: np.stack(v) for t, v in out.items() if v}


@torch.no_grad()
def evaluate(model, sets: dict[str, np.ndarray], device, use_autocast: bool) -> dict[str, float]:
    """Mean NLL per target token (nats) on each fixed held-out set."""
    model.eval()
    res = {}
    for task, ids in sets.items():
        tot = n = 0.0
        for i in range(0, len(ids), 8):
            x = torch.from_numpy(ids[i : i + 8]).to(device)
            with autocast_ctx(device, use_autocast):
                logits, _ = model(x[:, :-1])
            y = x[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=0, reduction="sum")
            tot, n = tot + float(nll), n + float((y != 0).sum())
        res[task] = tot / max(n, 1)
    model.train()
    return res


def _truncate_curves(path: Path, step: int) -> None:
    """Drop curve rows past the checkpoint (written after it by a process that then stopped)."""
    if path.exists():
        rows = [r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows))


def train(c: PretrainConfig, log=print) -> Path:
    """Train (or resume) the run in ``c.run``; returns the run folder. See the module docstring."""
    run = Path(c.run)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    codec = BarNoteCodec()
    corp = corpus_mod.build(c.data, run.parent / "corpus", log=log)
    ex_cfg = ExampleConfig(**c.examples)
    train_idx, valid_idx = corp.split("train"), corp.split("valid")
    sampler = ExampleSampler(codec, [corp.notes[i] for i in train_idx], [corp.files[i] for i in train_idx], ex_cfg)
    vsampler = ExampleSampler(codec, [corp.notes[i] for i in valid_idx], [corp.files[i] for i in valid_idx], ex_cfg)
    vsets = valid_set(vsampler, c.seed + 1)
    torch.manual_seed(c.seed)
    model = build_model(c.arch, {"vocab_size": codec.vocab_size, "block_size": ex_cfg.block_size, **c.model}).to(device)
    opt = _optimizer(model, c)
    step, rng, spent = 0, np.random.default_rng(c.seed), 0.0
    if (run / "checkpoint.json").exists():
        step, rng, spent = load_checkpoint(run, model, opt)
        log(f"resumed {run} at step {step} ({spent / 3600:.2f} h spent)")
        _truncate_curves(run / "curves.jsonl", step)
    elif c.init:
        warm_start(model, Path(c.init))
        log(f"started from the weights of {c.init}")
    (run / "corpus.json").write_text(json.dumps({"folder": str(corp.folder), "summary": corpus_mod.summary(corp)}))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{c.arch}: {n_params:,} parameters; {len(train_idx)} train / {len(valid_idx)} valid files; step {step}")
    model.train()
    t_start, t_ckpt, ema = time.time(), time.time(), None
    while step < c.total_steps and step != c.stop_at:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        ids, _ = sampler.batch(c.batch_size, rng)
        x = torch.from_numpy(ids).to(device)
        with autocast_ctx(device, c.autocast):
            _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip))
        opt.step()
        step += 1
        dt = time.time() - t0
        spent += dt
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        row = {"step": step, "loss": round(loss.item(), 4), "ema": round(ema, 4), "lr": lr_at(step - 1, c),
               "grad_norm": round(gnorm, 3), "tok_s": round(x[:, 1:].ne(0).sum().item() / dt), "hours": round(spent / 3600, 3)}  # fmt: skip
        if step % c.eval_every == 0 or step == c.total_steps:
            row["valid"] = {k: round(v, 4) for k, v in evaluate(model, vsets, device, c.autocast).items()}
            log(json.dumps(row))
        with open(run / "curves.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        out_of_time = c.max_minutes is not None and time.time() - t_start > c.max_minutes * 60
        stop = out_of_time or step == c.stop_at
        if time.time() - t_ckpt > c.checkpoint_minutes * 60 or step == c.total_steps or stop:
            save_checkpoint(run, model, opt, step, rng, spent, c)
            t_ckpt = time.time()
        if stop:
            log(
                f"stopping at step {step}: {'max_minutes reached' if out_of_time else 'stop_at'} (resume with the same command)"
            )
            break
    return run
