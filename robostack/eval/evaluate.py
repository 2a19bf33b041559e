"""``robostack eval``: roll a policy out in simulation, in parallel processes, and summarise what users compare."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robostack.errors import RobostackError, SpecError
from robostack.eval.metrics import percentiles_ms, rms_jerk, wilson_interval
from robostack.utils.table import format_table


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    ret: float
    length: int
    rms_jerk: float
    latencies: list[float] = field(default_factory=list)


@dataclass
class EvalResult:
    policy: str
    task: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_return: float
    mean_length: float
    rms_jerk: float
    latency_p50_ms: float
    latency_p99_ms: float
    seconds: float
    per_episode: list[dict[str, Any]]
    seed_range: str = "custom"
    """Which seed range (``robostack.eval.seeds``) the episodes came from: train-eval, selection, test or custom."""

    def table(self) -> str:
        rows = [
            ("success", f"{100 * self.success_rate:.1f}% ({self.successes}/{self.episodes})"),
            ("seeds", self._seeds_label()),
            ("95% interval", f"{100 * self.ci95[0]:.1f}% - {100 * self.ci95[1]:.1f}%"),
            ("mean return", f"{self.mean_return:.3f}"),
            ("mean length", f"{self.mean_length:.1f} steps"),
            ("action RMS jerk", f"{self.rms_jerk:.4f}"),
            ("chunk latency p50 / p99", f"{self.latency_p50_ms:.2f} / {self.latency_p99_ms:.2f} ms"),
            ("wall time", f"{self.seconds:.1f} s"),
        ]
        return format_table([f"{self.task}: {Path(self.policy).name}", ""], rows)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def _seeds_label(self) -> str:
        seeds = [int(e["seed"]) for e in self.per_episode]
        return f"{self.seed_range} ({min(seeds)}-{max(seeds)})" if seeds else self.seed_range


_STATE: dict[str, Any] = {}


def configure_inference(policy: Any, n_action_steps: int | None, num_steps: int | None) -> None:
    """Apply the evaluation's inference-time choices (actions per chunk, denoising steps) to a loaded policy."""
    if n_action_steps is not None:
        policy.set_n_action_steps(n_action_steps)
    if num_steps is not None:
        setter = getattr(policy, "set_num_steps", None)
        if setter is None:
            kind = (
                "an exported model fixes its steps (re-export with --steps K)"
                if hasattr(policy, "meta")
                else "this policy has no denoising steps"
            )
            raise RobostackError(f"--num-steps: {kind}")
        setter(num_steps)


def _init(
    policy_path: str,
    task_name: str,
    video_dir: str | None,
    n_action_steps: int | None = None,
    num_steps: int | None = None,
) -> None:
    import torch

    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)  # one thread per worker process; processes give the parallelism
    from robostack.runtime.loader import load_any_policy
    from robostack.sim.registry import make_task

    policy = load_any_policy(policy_path, threads=1)
    configure_inference(policy, n_action_steps, num_steps)
    cams = {k.removeprefix("obs/image_"): size for k, size in policy.spec.image_keys.items()}
    kwargs = {"cameras": tuple(cams), "image_size": next(iter(cams.values()))} if cams else {}
    _STATE["policy"] = policy
    _STATE["task"] = make_task(task_name, **kwargs)
    _STATE["video_dir"] = video_dir
    _STATE["videos"] = 0


def _episode(seed: int) -> EpisodeResult:
    import torch

    policy, task = _STATE["policy"], _STATE["task"]
    obs, _ = task.reset(seed=seed)
    policy.reset()
    torch.manual_seed(seed)  # the sampler's noise too: an episode's outcome does not depend on worker count
    if hasattr(policy, "seed"):  # exported models draw their noise from their own generator
        policy.seed(seed)
    spec = task.task_spec
    record = _STATE["video_dir"] is not None and _STATE["videos"] < 1
    frames, actions, latencies = [], [], []
    ret, success, t = 0.0, False, 0
    for t in range(spec.max_steps):  # noqa: B007
        if record:
            frames.append(task.render_frame(width=320, height=240))
        planning = policy.will_plan
        t0 = time.perf_counter()
        action = policy.select_action({f"obs/{k}": v for k, v in obs.items()})
        if planning:
            latencies.append(time.perf_counter() - t0)
        actions.append(action)
        obs, reward, terminated, truncated, info = task.step(action)
        ret += float(reward)
        success = success or bool(info.get("success", terminated))
        if terminated or truncated:
            break
    if record and frames:
        import imageio.v2 as imageio

        path = Path(_STATE["video_dir"]) / f"{spec.name}_seed{seed}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(path, frames, fps=spec.control_rate_hz, macro_block_size=8)
        _STATE["videos"] += 1
    return EpisodeResult(seed, success, ret, t + 1, rms_jerk(np.stack(actions)), latencies)


def check_policy_fits_task(policy_spec: Any, task_name: str) -> None:
    """The policy's observation and action specs must match what the task provides, key by key."""
    from robostack.sim.registry import task_spec

    spec = task_spec(task_name)
    provided = {f"obs/{k}": v for k, v in spec.obs.items()}
    for k, v in policy_spec.obs.items():
        if k.startswith("obs/image_"):
            continue  # camera tasks are made with their cameras in the worker
        if k not in provided:
            raise SpecError(f"policy observes '{k}', task '{task_name}' provides {', '.join(provided)}")
        if tuple(provided[k].shape) != tuple(v.shape):
            raise SpecError(
                f"policy expects '{k}' of shape {tuple(v.shape)}, task '{task_name}' gives {provided[k].shape}"
            )
    if tuple(policy_spec.action.shape) != tuple(spec.action.shape):
        raise SpecError(
            f"policy acts in {tuple(policy_spec.action.shape)}, task '{task_name}' takes {spec.action.shape}"
        )


def evaluate_in_process(policy: Any, name: str, task: str, episodes: int, seed: int = 100_000) -> EvalResult:
    """Evaluate a policy object in this process (e.g. a peer's policy behind the same contract)."""
    from robostack.sim.registry import make_task

    check_policy_fits_task(policy.spec, task)
    _STATE.update(policy=policy, task=make_task(task), video_dir=None, videos=0)
    t0 = time.perf_counter()
    results = [
        _episode(s)
        for s in tqdm(range(seed, seed + episodes), desc=f"eval {task}", disable=None, leave=False)
    ]
    return _summarise(name, task, results, time.perf_counter() - t0)


def _summarise(name: str, task: str, results: list[EpisodeResult], seconds: float) -> EvalResult:
    from robostack.eval.seeds import range_of

    n_succ = sum(r.success for r in results)
    seeds = sorted(r.seed for r in results)
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds))) if seeds else False
    p50, p99 = percentiles_ms([x for r in results for x in r.latencies])
    return EvalResult(
        policy=name,
        task=task,
        episodes=len(results),
        successes=n_succ,
        success_rate=n_succ / len(results),
        ci95=wilson_interval(n_succ, len(results)),
        mean_return=float(np.mean([r.ret for r in results])),
        mean_length=float(np.mean([r.length for r in results])),
        rms_jerk=float(np.mean([r.rms_jerk for r in results])),
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        seconds=seconds,
        per_episode=[
            {
                "seed": r.seed,
                "success": r.success,
                "return": r.ret,
                "length": r.length,
                "rms_jerk": r.rms_jerk,
            }
            for r in results
        ],
        seed_range=range_of(seeds[0], len(seeds)) if contiguous else "custom",
    )


def evaluate(
    policy_path: str | os.PathLike[str],
    task: str,
    episodes: int = 50,
    workers: int = 1,
    seed: int = 100_000,
    video_dir: str | None = None,
    progress: bool = True,
    n_action_steps: int | None = None,
    num_steps: int | None = None,
) -> EvalResult:
    from robostack.runtime.loader import load_any_policy, read_any_spec

    if episodes < 1:
        raise RobostackError("--episodes must be at least 1")
    check_policy_fits_task(read_any_spec(policy_path), task)
    for flag, value in (("--n-action-steps", n_action_steps), ("--num-steps", num_steps)):
        if value is not None and value < 1:
            raise RobostackError(f"{flag} must be at least 1, got {value}")
    if workers > 1 and (n_action_steps is not None or num_steps is not None):
        # a worker's initializer that raises makes the pool respawn workers forever: check the choices here
        configure_inference(load_any_policy(policy_path, threads=1), n_action_steps, num_steps)
    seeds = list(range(seed, seed + episodes))
    t0 = time.perf_counter()
    bar = tqdm(
        total=episodes, desc=f"eval {task}", unit="ep", disable=None if progress else True, leave=False
    )
    results: list[EpisodeResult] = []
    if workers <= 1:
        import torch

        threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
        try:
            _init(str(policy_path), task, video_dir, n_action_steps, num_steps)
            for s in seeds:
                results.append(_episode(s))
                bar.update(1)
        finally:  # _init pins one thread and episodes reseed torch: the caller (a trainer) keeps its own
            torch.set_num_threads(threads)
            torch.set_rng_state(rng_state)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(
            workers,
            initializer=_init,
            initargs=(str(policy_path), task, video_dir, n_action_steps, num_steps),
        ) as pool:
            for r in pool.imap(_episode, seeds):
                results.append(r)
                bar.update(1)
    bar.close()
    return _summarise(str(policy_path), task, results, time.perf_counter() - t0)
