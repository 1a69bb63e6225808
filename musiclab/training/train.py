"""Training: any zoo architecture on any folder of MIDI files, resumable, with a model card.

``python -m musiclab train --arch lstm --data DIR --out weights/lstm`` does it all:
tokenize (cached), train with a checkpoint every epoch (``<out>/checkpoint/``, safetensors
+ JSON, no pickle), early stopping, then write ``model.safetensors`` + ``config.json`` +
``README.md`` for the best epoch. Seeds are fixed, so a rerun on the same machine matches.
Under ``torchrun`` the same command trains with DistributedDataParallel (musiclab/training/distributed.py):
``batch_size`` is then the global batch, split evenly over the ranks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..codecs import make_tokenizer
from ..generation.threads import training_threads
from ..models import arch_classes, build_model
from ..serving.weights import pick_device, save_weights
from .baselines import bernoulli_nll, ngram_nll
from .cards import describe_data, write_card_readme
from .dataset import build_corpus, eval_windows, windows_at
from .distributed import (
    DistInfo,
    ShardedWindowSampler,
    barrier,
    broadcast,
    cleanup,
    init_distributed,
    mean_over_ranks,
    wrap_ddp,
)

PAPERS = {
    "lstm": "C: Joshi et al., Music Generation Using Recurrent Neural Networks (IJRASET 2022)",
    "bilstm": "A: Gokcay, Music Generation Using Deep Learning: A Bidirectional LSTM-Layer Based RNN Experiment",
    "lstm-attention": "B: Rocco, Colangelo, Rosatelli, Music Generation using LSTM (model 3b)",
    "bigru": "D: Zhou, Music Generation Based on Bidirectional GRU Model",
    "transformer-remi": "E: Rao & Xie, A Deep Dive into Music Generation with Modern Deep Learning Architectures",
    "pianoroll-lstm": "E: Rao & Xie, A Deep Dive into Music Generation with Modern Deep Learning Architectures",
    "pianoroll-nade": "E's piano-roll LSTM with an RNN-NADE output (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012)",
}


@dataclass
class TrainConfig:
    arch: str
    data: str  # folder of MIDI files (searched recursively)
    out: str  # output folder, e.g. weights/lstm
    epochs: int = 30
    steps_per_epoch: int = 200  # optimiser steps per epoch
    batch_size: int = 64  # windows per optimiser step; the global batch under torchrun (split over ranks)
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | rmsprop | sgd
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    patience: int = 10  # early stopping: epochs without a better valid loss
    seed: int = 1234
    max_files: int | None = None
    max_parse_seconds: float = 20.0
    time_budget_minutes: float | None = None  # stop after the epoch that crosses this
    eval_windows: int = 1500
    model: dict = field(default_factory=dict)  # overrides of the architecture's config
    tokenizer: dict = field(default_factory=lambda: {"kind": "note-shift"})

    def validate(self) -> None:
        """Raise ValueError saying which setting is out of range and what is accepted."""
        checks = [
            ("epochs", self.epochs, 1), ("steps_per_epoch", self.steps_per_epoch, 1),
            ("batch_size", self.batch_size, 1), ("patience", self.patience, 1), ("eval_windows", self.eval_windows, 1),
            ("max_files", self.max_files, 1),
        ]  # fmt: skip
        for name, v, low in checks:
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ValueError(f"{name} = {v!r} is not accepted; expected a whole number >= {low}")
        for name, v in (("lr", self.lr), ("max_parse_seconds", self.max_parse_seconds),
                        ("time_budget_minutes", self.time_budget_minutes)):  # fmt: skip
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
                raise ValueError(f"{name} = {v!r} is not accepted; expected a positive number")
        for name, v in (("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} = {v!r} is not accepted; expected a number >= 0")
        # a typo in --set or --config's "model" would otherwise train the default shape silently
        known = {f.name for f in dataclasses.fields(arch_classes(self.arch)[1])}
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ValueError(
                f"unknown model setting {', '.join(map(repr, unknown))} for {self.arch}; known: {', '.join(sorted(known))}"
            )


def _optimizer(cfg: TrainConfig, params):
    opts = {
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
    }
    if cfg.optimizer not in opts:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: {', '.join(opts)}")
    return opts[cfg.optimizer]()


def _to_tensor(a: np.ndarray, dev) -> torch.Tensor:
    t = torch.from_numpy(a)
    return (t.float() if a.ndim == 3 else t.long()).to(dev)


@torch.no_grad()
def evaluate_model(model, x: np.ndarray, y: np.ndarray, batch: int = 128) -> dict:
    """Held-out NLL per target (nats; per token, or per frame summed over keys) and accuracy."""
    model.eval()
    dev = next(model.parameters()).device
    nll_sum = hits = count = 0.0
    tp = fp = fn = 0
    for i in range(0, len(x), batch):
        xb, yb = _to_tensor(x[i : i + batch], dev), _to_tensor(y[i : i + batch], dev)
        if model.output == "multi-hot":
            # every real frame counts (silent frames too; padding frames are -1); frame accuracy =
            # TP / (TP + FP + FN), Bay et al. 2009. Targets go in: pianoroll-nade conditions on them.
            logits = model(xb, yb)[0].float()
            real = (yb[..., :1] >= 0).float()  # (B, T, 1)
            ll = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb.clamp(min=0), reduction="none")
            nll_sum += (ll * real).sum().item()
            count += real.sum().item()
            # the most likely frame (pianoroll-nade: keys chosen greedily low to high, not teacher-forced)
            pred = model.predict_frames(model.trunk(xb)[0]) > 0 if hasattr(model, "predict_frames") else logits > 0
            on, real = yb > 0, real > 0
            tp += (pred & on & real).sum().item()
            fp += (pred & ~on & real).sum().item()
            fn += (~pred & on & real).sum().item()
            continue
        logits, _ = model(xb)
        logits = logits.float()
        real = yb != 0
        ll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), yb.reshape(-1), reduction="none")
        nll_sum += ll[real.reshape(-1)].sum().item()
        hits += ((logits.argmax(-1) == yb) & real).sum().item()
        count += real.sum().item()
    model.train()
    if model.output == "multi-hot":
        hits = tp * count / max(tp + fp + fn, 1)
    return {"nll": nll_sum / max(count, 1), "accuracy": hits / max(count, 1), "targets": int(count)}


def _save_ckpt(d: Path, model, opt, state: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))
    flat = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            flat[f"{pid}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    flat["rng.torch"] = torch.get_rng_state()
    save_file(flat, str(d / "optim.safetensors"))
    (d / "state.json").write_text(json.dumps(state))


def _load_ckpt(d: Path, model, opt) -> dict:
    model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    flat = load_file(str(d / "optim.safetensors"))
    torch.set_rng_state(flat.pop("rng.torch"))
    sd = opt.state_dict()
    for key, v in flat.items():
        pid, k = key.split(".", 1)
        sd["state"].setdefault(int(pid), {})[k] = v if v.ndim else v.clone()
    opt.load_state_dict(sd)
    return json.loads((d / "state.json").read_text())


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Train ``cfg.arch``; returns the final card (also written to ``cfg.out``).

    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this: each trains on its own slice of
    every global batch, rank 0 alone logs and writes checkpoints, weights and the card and
    returns the card; the other ranks return {}."""
    cfg.validate()
    owns_group = not torch.distributed.is_initialized()  # leave only a group we joined here
    info = init_distributed(pick_device())
    try:
        card = _train(cfg, resume, log if info.is_main else (lambda *a, **k: None), info)
        barrier(info)  # leave the group together: rank 0 may still be writing the card
        return card
    finally:
        if owns_group:
            cleanup()


def _train(cfg: TrainConfig, resume: bool, log, info: DistInfo) -> dict:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    training_threads()  # MUSICLAB_THREADS=1 when two trainings share a 2-core box
    out = Path(cfg.out)
    if arch_classes(cfg.arch)[0].output == "multi-hot" and cfg.tokenizer.get("kind") != "pianoroll":
        # piano-roll models read frames: 4 per beat for MIDI folders, 1 per beat for JSB Chorales
        jsb = (Path(cfg.data) / "train.json").is_file()
        cfg.tokenizer = {"kind": "pianoroll", "steps_per_beat": 1 if jsb else 4}
    tok = make_tokenizer(cfg.tokenizer)
    # rank 0 tokenizes first; then local rank 0 of every other node (a cache hit if MUSICLAB_CACHE
    # is shared storage); then all other ranks read the memory-mapped cache
    stage = 0 if info.rank == 0 else 1 if info.local_rank == 0 else 2
    for s in range(3):
        if s == stage:
            corpus = build_corpus(cfg.data, tok.to_dict(), cfg.max_files, cfg.max_parse_seconds, log=log)
        barrier(info)
    model_cfg = {"vocab_size": tok.vocab_size, **cfg.model} if hasattr(tok, "vocab_size") else dict(cfg.model)
    _, cfg_cls = arch_classes(cfg.arch)
    model_cfg = {k: v for k, v in model_cfg.items() if k in {f.name for f in dataclasses.fields(cfg_cls)}}
    dev = info.device
    model = build_model(cfg.arch, model_cfg).to(dev)
    opt = _optimizer(cfg, model.parameters())
    T = model.get_block_size()
    sampler = ShardedWindowSampler([len(a) for a in corpus.train], cfg.batch_size, info.rank, info.world_size)
    vx, vy = eval_windows(corpus.valid, T, model.causal, cfg.eval_windows) if info.is_main else (None, None)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"{cfg.arch}: {n_params:,} params on {dev}; train {corpus.n_tokens('train'):,} / valid "
        f"{corpus.n_tokens('valid'):,} tokens from {corpus.files} files"
        + (f"; DDP over {info.world_size} processes" if info.enabled else "")
    )
    state = {"epoch": 0, "curves": {"train": [], "valid": [], "valid_acc": []}, "best": math.inf, "bad": 0, "secs": 0.0}
    ckpt = out / "checkpoint"
    if resume and (ckpt / "state.json").exists():
        state = _load_ckpt(ckpt, model, opt)
        log(f"resumed from epoch {state['epoch']}")
    if info.enabled:  # every rank must have read the same checkpoint (global state, any world size)
        same = mean_over_ranks(float(state["epoch"] == broadcast(state["epoch"], info)), info) == 1.0
        if not same:
            raise ValueError(f"ranks resumed from different epochs: {ckpt} must be on storage every node reads")
    net = wrap_ddp(model, info)  # train through DDP; evaluate and save the plain model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    model.train()
    while state["epoch"] < cfg.epochs and state["bad"] < cfg.patience:
        ep = state["epoch"]
        if info.enabled:  # per-rank dropout streams, reproducible on resume under any world size
            torch.manual_seed(cfg.seed + 7919 * (ep + 1) + info.rank)
        # per-epoch stream of global batches (seed + epoch): resume gives the same batches
        batches = sampler.epoch(cfg.seed + ep, cfg.steps_per_epoch)
        t0, losses, seen = time.perf_counter(), [], 0
        for it, (file_idx, ends) in enumerate(batches):
            x, y = windows_at(corpus.train, file_idx, ends, T, model.causal)  # this rank's slice
            with amp:
                _, loss = net(_to_tensor(x, dev), _to_tensor(y, dev))  # DDP averages grads over ranks
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            seen += x.shape[0] * x.shape[1] * info.world_size  # tokens (frames) of the global batch
            if info.is_main and ((it + 1) % 20 == 0 or it + 1 == cfg.steps_per_epoch):
                rate = seen / (time.perf_counter() - t0)
                bar = "#" * int(20 * (it + 1) / cfg.steps_per_epoch)
                print(
                    f"\repoch {ep + 1} [{bar:<20}] loss {np.mean(losses[-20:]):.3f} {rate:,.0f} tok/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        if info.is_main:
            print(file=sys.stderr)
        train_loss = mean_over_ranks(float(np.mean(losses)), info)
        val = evaluate_model(model, vx, vy) if info.is_main else None
        state["secs"] += time.perf_counter() - t0
        val, state["secs"] = broadcast((val, state["secs"]), info)  # rank 0 decides stopping for all
        state["epoch"] = ep + 1
        state["curves"]["train"].append(train_loss)
        state["curves"]["valid"].append(val["nll"])
        state["curves"]["valid_acc"].append(val["accuracy"])
        improved = val["nll"] < state["best"]
        state["best"], state["bad"] = (val["nll"], 0) if improved else (state["best"], state["bad"] + 1)
        log(
            f"epoch {ep + 1}: train {train_loss:.4f}  valid {val['nll']:.4f}  acc {val['accuracy']:.3f}"
            f"{'  (best)' if improved else ''}  {state['secs'] / 60:.1f} min"
        )
        if improved and info.is_main:
            save_weights(model, out, {"arch": cfg.arch, "tokenizer": tok.to_dict()})
        if info.is_main:  # optimiser state is identical on every rank (same averaged gradients)
            _save_ckpt(ckpt, model, opt, state)
        if cfg.time_budget_minutes and state["secs"] / 60 >= cfg.time_budget_minutes:
            log("time budget reached")
            break
    return finish_card(cfg, out, corpus, state, n_params) if info.is_main else {}


def finish_card(cfg: TrainConfig, out: Path, corpus, state: dict, n_params: int) -> dict:
    """Score the best weights and the baseline on the valid split; write config.json + README.md."""
    from ..serving.weights import clear_cache, load_model

    clear_cache()
    loaded = load_model(out.name, out.parent, device=pick_device())
    model, tok = loaded.net, loaded.codec
    vx, vy = eval_windows(corpus.valid, model.get_block_size(), model.causal, cfg.eval_windows)
    val = evaluate_model(model, vx, vy)
    model.eval()
    if model.output == "multi-hot":  # scored on the same targets as the model: every frame but the first
        base = bernoulli_nll([a[1:] for a in corpus.train], [a[1:] for a in corpus.valid])
        base_name = "per-key Bernoulli 1-gram"
    else:
        base = ngram_nll(corpus.train, corpus.valid, tok.vocab_size, n=3)
        base_name = "interpolated 3-gram"
    golden = golden_decode(model, corpus.valid[0])
    card = dict(loaded.card)
    card.update(
        name=out.name,
        paper=PAPERS.get(cfg.arch, ""),
        description=getattr(model, "description", ""),  # class attribute: recipe vs shipped, changes made
        reference_shape=getattr(model, "reference_shape", None),  # the paper's config, buildable via --config
        params=n_params,
        data=f"{describe_data(cfg.data)}: {corpus.files} files; train {len(corpus.train)} / valid {len(corpus.valid)}, "
        f"{corpus.split}; {len(corpus.skipped)} skipped",
        metrics={
            "valid_nll": round(val["nll"], 4),
            "valid_accuracy": round(val["accuracy"], 4),
            "baseline": base_name,
            "baseline_nll": round(base["nll"], 4),
            "nll_vs_baseline": round(1 - val["nll"] / base["nll"], 4),
            "targets": val["targets"],
        },
        training={k: v for k, v in dataclasses.asdict(cfg).items()},
        epochs=state["epoch"],
        train_minutes=round(state["secs"] / 60, 1),
        curves=state["curves"],
        golden=golden,
        command=_launcher() + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "",
        versions={"musiclab": __version__, "torch": torch.__version__, "python": platform.python_version()},
    )
    (out / "config.json").write_text(json.dumps(card, indent=1) + "\n")
    write_card_readme(out, card)
    if corpus.split.startswith("JSB"):  # the benchmark's own metric, whole pieces (musiclab/evaluation/jsb.py)
        from ..evaluation.jsb import add_jsb_metrics

        card = add_jsb_metrics(out, Path(cfg.data) / "valid.json")
    return card


def _launcher() -> str:
    """How this run was started, for the card: plain python, or torchrun with its shape."""
    world, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if world <= 1:
        return "python -m musiclab train "
    return f"torchrun --nnodes {max(1, world // local)} --nproc_per_node {local} -m musiclab train "


@torch.no_grad()
def golden_decode(model, arr: np.ndarray, n_prompt: int = 32, n_new: int = 16) -> dict:
    """Greedy ids after a fixed prompt; the tests replay this against the shipped weights."""
    dev = next(model.parameters()).device
    if model.output == "multi-hot":  # piano rolls: exact NLL (nats/frame) of a fixed stretch of frames
        fr = torch.from_numpy(arr[: n_prompt + 1].astype(np.float32)).unsqueeze(0).to(dev)
        logits, _ = model(fr[:, :-1], fr[:, 1:])
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), fr[:, 1:], reduction="sum")
        return {"frames": [np.flatnonzero(f).tolist() for f in arr[: n_prompt + 1]], "nll": nll.item() / n_prompt}
    prompt = arr[:n_prompt].astype(np.int64)
    x = torch.from_numpy(prompt).unsqueeze(0).to(dev)
    logits, st = model.prefill(x)
    out = []
    for _ in range(n_new):
        nxt = logits.float().argmax(-1)
        out.append(int(nxt.item()))
        logits, st = model.step(nxt, st)
    return {"prompt": prompt.tolist(), "greedy": out}
