"""``robostack train``: one readable loop from a store to checkpoints, for every policy family.

data (store -> RAM buffer -> windows) -> policy (stats inside) -> AdamW + warm-up/cosine + EMA -> checkpoints
(safetensors + resolved config + statistics + data fingerprint) -> periodic evaluation in simulation.
Multi-GPU (or multi-process CPU) through ``torchrun``: one process per rank, DDP-averaged gradients, rank 0 writes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from robostack.config import save_yaml
from robostack.data.buffer import EpisodeBuffer, EpisodeFilter, load_buffer
from robostack.data.normalize import KeyStats, compute_stats
from robostack.data.sampler import SequenceSampler
from robostack.data.schema import IMITATE_KEY, FeatureSpec
from robostack.data.store import EpisodeStore
from robostack.errors import RobostackError, StoreError
from robostack.policies.base import Policy, PolicySpec
from robostack.policies.checkpoint import build_policy, save_policy
from robostack.policies.loading import LAST
from robostack.policies.unet1d import store_conv_weights_channels_last
from robostack.train.adamw import SharedStepAdamW
from robostack.train.compiled import compile_for_training
from robostack.train.config import TrainConfig
from robostack.utils.generators import drain, pause_point
from robostack.utils.provenance import provenance


def data_fingerprint(store: EpisodeStore, episode_indices: list[int]) -> dict[str, Any]:
    """Identifies exactly which data a policy saw: store, committed episodes and the subset used."""
    h = hashlib.sha256()
    h.update(store.episode_ends.tobytes())
    h.update(json.dumps(store.info.provenance, sort_keys=True, default=str).encode())
    h.update(np.asarray(episode_indices, np.int64).tobytes())
    return {
        "store": str(store.path.resolve()),
        "episodes": len(episode_indices),
        "store_episodes": store.n_episodes,
        "sha256": h.hexdigest()[:16],
    }


def load_training_data(
    store: EpisodeStore, keys: list[str], episodes: EpisodeFilter
) -> tuple[EpisodeBuffer, dict[str, KeyStats]]:
    """The buffer of ``keys`` (plus the ``imitate`` flag where the store has one) and the normalisation statistics
    of its non-image keys; the action statistics cover only imitated steps, so a perturbation's commands never
    stretch the action range a policy learns in."""
    masked = IMITATE_KEY in store.keys
    buf = load_buffer(store.path, [*keys, *([IMITATE_KEY] if masked else [])], episodes)
    stats = compute_stats(
        buf,
        [k for k in keys if store.info.features[k].dtype != "uint8"],
        rows={"action": buf.data[IMITATE_KEY]} if masked else None,
    )
    return buf, stats


def make_spec(store: EpisodeStore, obs_keys: list[str], stats: dict) -> PolicySpec:
    feats = store.info.features
    task_spec = store.info.extra.get("task_spec") or {}
    if "action_low" in task_spec:
        low, high = task_spec["action_low"], task_spec["action_high"]
    else:  # recorded data without declared bounds: the range seen in the data
        low, high = stats["action"].min.tolist(), stats["action"].max.tolist()
    return PolicySpec(
        obs={k: feats[k] for k in obs_keys},
        action=FeatureSpec(feats["action"].dtype, feats["action"].shape, names=feats["action"].names),
        action_low=[float(x) for x in low],
        action_high=[float(x) for x in high],
        control_rate_hz=store.info.control_rate_hz,
    )


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


class EMAUpdater:
    """``ema <- lerp(ema, model, 1 - decay)`` after every optimiser step, decay warming up as ``1 - (1 + step)^-power``.

    The tensor lists are gathered once: walking two U-Nets' module trees for their parameters and buffers cost
    ~0.9 ms per step (2 CPU threads, 1.1 M push U-Net), five times the update itself (0.18 ms) and ~3% of a
    compiled training step. The lists stay valid because resuming, DDP and torch.compile all keep the same
    parameter objects (``load_state_dict`` copies into them)."""

    def __init__(self, ema: Policy, model: Policy, power: float, max_decay: float) -> None:
        self.power = power
        self.max_decay = max_decay
        self._dst, self._src = list(ema.parameters()), list(model.parameters())
        self._dst_buffers, self._src_buffers = list(ema.buffers()), list(model.buffers())

    def decay(self, step: int) -> float:
        return 0.0 if step == 0 else min(self.max_decay, 1.0 - (1.0 + step) ** -self.power)

    @torch.no_grad()
    def update(self, step: int) -> None:
        # One fused call over all tensors: a per-parameter loop cost 3.4 ms of a ~100 ms compiled push step on CPU
        # (148 parameters, two ops each), the fused update 0.3 ms.
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay(step))
        if self._dst_buffers:
            torch._foreach_copy_(self._dst_buffers, self._src_buffers)


class _DDPLoss(torch.nn.Module):
    """DDP wraps ``forward``; a policy's training entry point is ``compute_loss``."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.policy.compute_loss(batch)


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True) for k, v in batch.items()
    }


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RobostackError("device cuda requested but torch sees no CUDA GPU")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}" if world > 1 else cfg.device)
    else:
        device = torch.device("cpu")
    return rank, world, device


def train(cfg: TrainConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg`` into the run folder ``out`` (or continue it with ``resume``); returns the folder."""
    return drain(iter_train(cfg, out, resume, progress))


def iter_train(
    cfg: TrainConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Generator[int, None, Path]:
    """``train`` one optimisation step at a time: yields the number of steps done after each one and returns the
    run folder. Time spent suspended at a ``yield`` is not training time: the recorded ``train_s`` and samples/s
    leave it out, so a benchmark can alternate two trainings in one process and time each fairly."""
    rank, world, device = _setup_distributed(cfg)
    run = Path(out)
    if (run / "config.yaml").exists() and not resume:
        raise RobostackError(
            f"{run}: a run already exists here (pass --resume to continue it, or another --out)"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed + rank)

    # ---------------------------------------------------------------- data
    if not cfg.data.path:
        raise RobostackError("data.path is required (--data PATH.zarr)")
    store = EpisodeStore(cfg.data.path)
    obs_keys = list(cfg.policy.get("obs_keys") or [k for k in store.keys if k.startswith("obs/")])
    needed = [*obs_keys, "action"]
    missing = [k for k in needed if k not in store.keys]
    if missing:
        raise StoreError(f"{store.path}: missing key(s) {', '.join(missing)} that the policy config needs")
    buf, stats = load_training_data(
        store,
        needed,
        EpisodeFilter(success=True if cfg.data.success_only else None, max_episodes=cfg.data.max_episodes),
    )
    spec = make_spec(store, obs_keys, stats)
    policy = build_policy(cfg.policy["type"], {**cfg.policy, "obs_keys": obs_keys}, spec, stats).to(device)
    if cfg.compile and device.type == "cpu" and world == 1:
        # Before the EMA copy and the optimiser state, so that both take the same strides.
        store_conv_weights_channels_last(policy)
    ema = copy.deepcopy(policy).requires_grad_(False) if cfg.ema.enabled else None
    ema_updater = EMAUpdater(ema, policy, cfg.ema.power, cfg.ema.max_decay) if ema is not None else None
    rng = np.random.default_rng([cfg.seed, rank])
    n_val = int(round(cfg.data.val_fraction * buf.n_episodes)) if buf.n_episodes > 1 else 0
    val_eps = set(np.random.default_rng(cfg.seed).choice(buf.n_episodes, n_val, replace=False).tolist())
    mask = np.array([i not in val_eps for i in range(buf.n_episodes)])
    sampler_kw = {
        "horizon": policy.window_horizon(),
        "n_obs_steps": policy.config.n_obs_steps,
        "n_action_steps": min(
            policy.config.n_action_steps, policy.window_horizon() - policy.config.n_obs_steps + 1
        ),
        "obs_keys": obs_keys,
    }
    train_windows = SequenceSampler(buf, episode_mask=mask, **sampler_kw)
    val_windows = SequenceSampler(buf, episode_mask=~mask, **sampler_kw) if n_val else None

    # torch's fused AdamW (one kernel over all parameters: ~10% of a small U-Net's CPU step went to the for-each
    # update) with one step counter for all parameters instead of one each.
    opt = SharedStepAdamW(
        policy.parameters(),
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.optim.warmup_steps, cfg.steps))
    start = 0
    if resume:
        start = _load_train_state(run, policy, ema, opt, sched, rng)
    model: torch.nn.Module = _DDPLoss(policy)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        model = compile_for_training(model)

    writer = None
    fingerprint = data_fingerprint(store, [e.index for e in buf.episodes])
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run / "config.yaml")
        (run / "data.json").write_text(json.dumps(fingerprint, indent=1))
        (run / "provenance.json").write_text(json.dumps(provenance(asdict(cfg)), indent=1, default=str))
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run / "tb"))
        except ImportError:  # TensorBoard is optional; metrics.jsonl always has the same scalars
            writer = None
    if rank == 0 and start:
        _forget_metrics_after(run / "metrics.jsonl", start)
    metrics_file = (run / "metrics.jsonl").open("a") if rank == 0 else None
    eval_task = cfg.eval.task or _default_task(store)
    extra = {"data": fingerprint, "train_config": asdict(cfg)}

    bar = tqdm(
        total=cfg.steps, initial=start, desc=f"train {cfg.policy['type']}", unit="step",
        disable=None if (progress and rank == 0) else True,
    )  # fmt: skip
    t0, samples, paused = time.perf_counter(), 0, 0.0
    # Wall time of the optimisation loop, carried across --resume so a run folder says what it cost in total.
    prior_s = recorded_train_seconds(run) if start else 0.0
    policy.train()
    for step in range(start, cfg.steps):
        batch = _to_tensors(train_windows.random_batch(cfg.optim.batch_size, rng), device)
        loss, info = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        if ema_updater is not None:
            ema_updater.update(step)
        samples += cfg.optim.batch_size * world
        bar.update(1)
        last = step + 1 == cfg.steps
        want_val = val_windows is not None and ((step + 1) % cfg.val_every == 0 or last)
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or last or want_val):
            ran_s = time.perf_counter() - t0 - paused
            record = {
                "step": step + 1,
                "loss": float(loss.detach()),
                "lr": sched.get_last_lr()[0],
                "samples_per_s": samples / ran_s,
                "train_s": prior_s + ran_s,
            }
            if want_val:
                record["val_loss"] = _val_loss(
                    ema if ema is not None else policy, val_windows, cfg.optim.batch_size, device, cfg.seed
                )
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            _log(record, writer, metrics_file)
        do_eval = eval_task and ((cfg.eval.every and (step + 1) % cfg.eval.every == 0) or last)
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or last or do_eval):
            ckpt = _save_checkpoint(run, step + 1, policy, ema, opt, sched, rng, stats, extra)
            if do_eval and cfg.eval.episodes > 0:
                result = _evaluate(ckpt, eval_task, cfg)
                _log({"step": step + 1, "success_rate": result["success_rate"]}, writer, metrics_file)
        paused += yield from pause_point(step + 1, device)
    bar.close()
    if world > 1:
        # Record that DDP kept every rank's weights identical (what averaging gradients promises).
        checksum = torch.tensor(
            [float(sum(p.detach().double().sum() for p in policy.parameters()))], dtype=torch.float64
        )
        gathered = [torch.zeros_like(checksum) for _ in range(world)]
        dist.all_gather(gathered, checksum)
        if rank == 0:
            sums = [float(g) for g in gathered]
            (run / "ddp.json").write_text(
                json.dumps({"world_size": world, "param_checksums": sums, "in_sync": len(set(sums)) == 1})
            )
    if rank == 0:
        if metrics_file:
            metrics_file.close()
        if writer is not None:
            writer.close()
        from robostack.utils.plots import plot_training_curve

        plot_training_curve(run / "metrics.jsonl", run / "training_curve.png")
    if world > 1:
        dist.barrier()
    return run


def _default_task(store: EpisodeStore) -> str:
    from robostack.sim.registry import task_names

    tasks = [t for t in store.info.tasks if t in task_names()]
    return tasks[0] if tasks else ""


@torch.no_grad()
def _val_loss(
    policy: Policy, sampler: SequenceSampler, batch_size: int, device: torch.device, seed: int
) -> float:
    was_training = policy.training
    policy.train()  # same loss as training (random crops / noise levels), on held-out episodes, fixed seed
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    losses = [
        float(policy.compute_loss(_to_tensors(sampler.random_batch(batch_size, rng), device))[0])
        for _ in range(4)
    ]
    torch.set_rng_state(torch_state)
    policy.train(was_training)
    return float(np.mean(losses))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl; a line cut short by a kill is not a record."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _forget_metrics_after(path: Path, step: int) -> None:
    """Drop what a killed run logged after its last checkpoint: the resumed run trains those steps again, and the
    metrics, the training curve and the recorded training time should describe one history."""
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)


def recorded_train_seconds(run: Path) -> float:
    """Training wall time the run's metrics record so far (0 when none is recorded)."""
    seconds = [r["train_s"] for r in read_metrics(run / "metrics.jsonl") if "train_s" in r]
    return seconds[-1] if seconds else 0.0


def _log(record: dict[str, Any], writer: Any, f: Any) -> None:
    if writer is not None:
        for k, v in record.items():
            if k != "step":
                writer.add_scalar(k, v, record["step"])
    if f is not None:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _save_checkpoint(run: Path, step: int, policy, ema, opt, sched, rng, stats, extra) -> Path:
    name = f"step_{step:08d}"
    folder = run / "checkpoints" / name
    save_policy(ema if ema is not None else policy, folder, stats, {"step": step, **extra})
    state = {
        "step": step,
        "model": policy.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, folder / "train_state.pt")
    tmp = run / "checkpoints" / (LAST + ".partial")
    tmp.write_text(name)
    os.replace(tmp, run / "checkpoints" / LAST)
    return folder


def _load_train_state(run: Path, policy, ema, opt, sched, rng) -> int:
    last = run / "checkpoints" / LAST
    if not last.is_file():
        raise RobostackError(f"{run}: nothing to resume (no checkpoint)")
    path = run / "checkpoints" / last.read_text().strip() / "train_state.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        policy.load_state_dict(state["model"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, FileNotFoundError) as exc:
        raise RobostackError(
            f"{path}: cannot resume from this checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _evaluate(ckpt: Path, task: str, cfg: TrainConfig) -> dict[str, Any]:
    from robostack.eval.evaluate import evaluate

    result = evaluate(ckpt, task, cfg.eval.episodes, cfg.eval.workers, cfg.eval.seed, progress=False)
    (ckpt / "eval.json").write_text(json.dumps(result.to_json(), indent=1))
    tqdm.write(
        f"step {ckpt.name[5:].lstrip('0')}: {task} success {100 * result.success_rate:.0f}% "
        f"({result.successes}/{result.episodes})"
    )
    return result.to_json()
