"""Scale-out training: the rank-sharded sampler, the memory-mapped token cache, real 2-process
gloo DDP steps (ranks agree, and equal one process on the same global batch), and the
``torchrun -m musiclab train`` CLI resuming a 1-process checkpoint on 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, make_midi
from safetensors.torch import load_file, save_file

from musiclab.codecs import make_tokenizer
from musiclab.models import build_model
from musiclab.training.dataset import build_corpus, sample_windows, windows_at
from musiclab.training.distributed import (
    DistInfo,
    ShardedWindowSampler,
    cleanup,
    exit_worker,
    init_distributed,
    wrap_ddp,
)

TINY = {"block_size": 24, "n_embd": 16, "hidden": 32, "n_layer": 1, "dense": [32], "dropout": 0.0}
SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def melody(i: int):
    """A PrettyMIDI of 40 + 6 i sixteenth-ish notes (every file longer than the 24-token window)."""
    notes = [(SCALE[(j * (i + 1)) % 8] + i % 3, j * 0.25, j * 0.25 + 0.25) for j in range(40 + 6 * i)]
    return make_midi(notes)


def token_arrays(n: int = 6) -> list[np.ndarray]:
    tok = make_tokenizer({"kind": "note-shift"})
    return [np.asarray(tok.encode(melody(i))) for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sampler_shards_the_global_batch_and_matches_sample_windows():
    arrays = token_arrays()
    lens = [len(a) for a in arrays]
    one = list(ShardedWindowSampler(lens, 12).epoch(seed=5, steps=3))
    two = [list(ShardedWindowSampler(lens, 12, r, 2).epoch(seed=5, steps=3)) for r in range(2)]
    rng = np.random.default_rng(5)
    for step, (f, e) in enumerate(one):
        # world size 1 draws exactly the windows the single-process trainer always drew
        ref = sample_windows(arrays, 12, 24, True, rng)
        got = windows_at(arrays, f, e, 24, True)
        assert all(np.array_equal(a, b) for a, b in zip(ref, got))
        # two ranks: disjoint halves of the same global batch, 6 windows each
        (f0, e0), (f1, e1) = two[0][step], two[1][step]
        assert len(f0) == len(f1) == 6
        assert np.array_equal(np.concatenate([f0, f1]), f) and np.array_equal(np.concatenate([e0, e1]), e)
    with pytest.raises(ValueError, match="multiple of 4, got 10"):
        ShardedWindowSampler(lens, 10, 0, 4)


def test_sharded_cache_is_memory_mapped_and_matches_the_encoder(tmp_path, monkeypatch):
    data = tmp_path / "midi"
    data.mkdir()
    for i in range(6):
        melody(i).write(str(data / f"m{i}.mid"))
    (data / "broken.mid").write_bytes(b"RIFF not a midi file")
    monkeypatch.setenv("MUSICLAB_SHARD_MB", "0.001")  # ~1 kB shards: several files, several shards
    tok = {"kind": "note-shift"}
    first = build_corpus(data, tok, workers=2, cache_dir=tmp_path / "cache", log=lambda *a: None)
    shards = sorted((tmp_path / "cache").glob("*/shard-*.offsets.npy"))
    assert len(shards) >= 2
    lines = []
    again = build_corpus(data, tok, cache_dir=tmp_path / "cache", log=lines.append)
    assert "memory-mapped" in lines[0]
    assert all(isinstance(a, np.memmap) and not a.flags.writeable for a in again.train + again.valid)
    expected = dict(zip([f"m{i}.mid" for i in range(6)], token_arrays()))
    got = again.train + again.valid
    assert sorted(len(a) for a in got) == sorted(len(a) for a in expected.values())
    assert all(any(np.array_equal(a, b) for b in expected.values()) for a in got)
    assert [s[0] for s in first.skipped] == [s[0] for s in again.skipped] == ["broken.mid"]


def _steps(info: DistInfo, steps: int = 3) -> dict[str, torch.Tensor]:
    """The train.py step on this rank's slice of a 12-window global batch; returns the weights."""
    arrays = token_arrays()
    torch.manual_seed(0)
    model = build_model("lstm", {**TINY, "vocab_size": make_tokenizer({"kind": "note-shift"}).vocab_size})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    net = wrap_ddp(model, info)
    sampler = ShardedWindowSampler([len(a) for a in arrays], 12, info.rank, info.world_size)
    for f, e in sampler.epoch(seed=3, steps=steps):
        x, y = windows_at(arrays, f, e, TINY["block_size"], True)
        _, loss = net(torch.from_numpy(x).long(), torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MUSICLAB_DIST_TIMEOUT="2")
    torch.set_num_threads(1)
    info = init_distributed()
    try:
        assert info.enabled and info.rank == rank
        save_file(_steps(info), str(Path(out) / f"rank{rank}.safetensors"))
    finally:
        cleanup()
    exit_worker()  # as the CLI does: gloo can abort in interpreter teardown after a clean run


def test_two_gloo_ranks_agree_and_equal_one_process_on_the_global_batch(tmp_path):
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    torch.set_num_threads(1)
    single = _steps(DistInfo())
    for k in single:
        assert torch.equal(r0[k], r1[k]), f"ranks disagree on {k}"
        assert torch.allclose(r0[k], single[k], rtol=1e-4, atol=1e-6), f"DDP != one process on {k}"
    # the steps really moved the weights (an all-zero update would pass the checks above)
    torch.manual_seed(0)
    init = build_model("lstm", {**TINY, "vocab_size": make_tokenizer({"kind": "note-shift"}).vocab_size})
    assert max((init.state_dict()[k] - single[k]).abs().max().item() for k in single) > 1e-2


def _torchrun_cmd(data: Path, out: Path, epochs: int, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "musiclab"]
    cmd += ["train", "--arch", "lstm", "--data", str(data), "--out", str(out), "--epochs", str(epochs)]
    cmd += ["--steps-per-epoch", "3", "--batch-size", "8", "--lr", "0.01"]
    for k, v in TINY.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd + (["--resume"] if resume else [])


def _train_here(data: Path, out: Path, epochs: int) -> str:
    """The same run in this process (what a plain ``python -m musiclab train`` does); its log."""
    from musiclab.training.train import TrainConfig, train

    lines: list[str] = []
    cfg = TrainConfig("lstm", str(data), str(out), epochs=epochs, steps_per_epoch=3, batch_size=8, lr=0.01)
    cfg.model = dict(TINY)
    train(cfg, log=lines.append)
    return "\n".join(lines)


def _run(cmd: list[str], env: dict) -> str:
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoint" / "model.safetensors"))


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), f"{k}: max diff {(a[k] - b[k]).abs().max():.2e}"


@pytest.mark.slow
def test_torchrun_cli_equals_one_process_and_resumes_on_another_world_size(tmp_path, monkeypatch):
    data = tmp_path / "midi"
    data.mkdir()
    for i in range(8):
        melody(i).write(str(data / f"m{i}.mid"))
    env = dict(os.environ, MUSICLAB_CACHE=str(tmp_path / "cache"), MUSICLAB_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    monkeypatch.setattr("musiclab.training.dataset.CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _train_here(data, tmp_path / "one", 1)  # 1 process, epoch 1
        _train_here(data, tmp_path / "ref", 2)  # 1 process, 2 epochs: the reference for the resume below
    finally:
        torch.set_num_threads(threads)
    two = _run(_torchrun_cmd(data, tmp_path / "two", 1), env)  # 2 gloo processes, epoch 1
    assert "DDP" not in one and one.count("epoch 1:") == 1
    assert two.count("epoch 1:") == 1 and "DDP over 2 processes" in two  # only rank 0 logs
    _assert_close(_weights(tmp_path / "two"), _weights(tmp_path / "one"))
    card = json.loads((tmp_path / "two" / "config.json").read_text())
    assert card["command"].startswith("torchrun --nnodes 1 --nproc_per_node 2 -m musiclab train")

    # resume the 1-process checkpoint on 2 processes == 2 epochs in one process
    shutil.copytree(tmp_path / "one", tmp_path / "grow")
    grown = _run(_torchrun_cmd(data, tmp_path / "grow", 2, resume=True), env)
    assert "resumed from epoch 1" in grown
    _assert_close(_weights(tmp_path / "grow"), _weights(tmp_path / "ref"))
    curves = [json.loads((tmp_path / d / "config.json").read_text())["curves"]["train"] for d in ("grow", "ref")]
    assert len(curves[0]) == 2 and np.allclose(curves[0], curves[1], rtol=1e-4)
