"""robostack's IQL against d3rlpy's (2.8.1, installed for this benchmark only, see below) on the same store, with the
same networks, hyper-parameters and gradient steps: gradient steps per second (alternating rounds in one process, so
both meet the same phases of a shared machine) and offline success of each on the same test seeds.

Same for both: observations min-max normalised to [-1, 1] (the 10-d push state), actions likewise, reward r - 1,
terminals from the store (a time-limited last step is a timeout), twin Q and V of 256 x 256 ReLU, an actor of
256 x 256 (robostack: Linear + LayerNorm + Mish, tanh mean; d3rlpy: Linear + LayerNorm + Swish, its NormalPolicy),
expectile 0.9, beta 10, weights clipped at 100, batch 256, Adam 3e-4, gamma 0.99, Polyak 0.005, the actor's learning
rate cosine-decayed over the run. Each step includes sampling its batch (what ``fit`` does); the update alone is
timed too, on one pre-sampled batch.

d3rlpy 2.8.1 pins gymnasium 1.0 (the project has 1.4): install it beside the project without its pins,
``.venv/bin/pip install --no-deps d3rlpy==2.8.1 && .venv/bin/pip install gym==0.26.2 structlog colorama
dataclasses-json scikit-learn click -c requirements/constraints.txt`` (it imports and trains with gymnasium 1.4).

    .venv/bin/python benchmarks/iql_d3rlpy.py --data push_medium_mixed_200.zarr --steps 20000 \
        [--rounds 10 --episodes 100 --out benchmarks/results/iql_d3rlpy.md]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robostack.algos.o2o import REWARD_SHIFT, O2OConfig, O2OData, check_stores, load_offline, make_learner
from robostack.data.buffer import load_buffer
from robostack.eval.evaluate import evaluate, evaluate_in_process
from robostack.eval.seeds import seed_range
from robostack.policies.checkpoint import save_policy
from robostack.train.data import to_tensors
from robostack.utils.table import format_markdown


def d3rlpy_dataset(path: str, keys: list[str]):
    import d3rlpy

    buf = load_buffer(path, [*keys, "action", "reward", "terminated"])
    obs = np.concatenate([buf.data[k].astype(np.float32) for k in keys], axis=1)
    ends = buf.episode_ends.astype(np.int64)
    terminals = buf.data["terminated"].astype(np.float32)
    timeouts = np.zeros_like(terminals)
    last = ends - 1
    timeouts[last] = 1.0 - terminals[last]
    ds = d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=buf.data["action"].astype(np.float32),
        rewards=buf.data["reward"].astype(np.float32) + REWARD_SHIFT,
        terminals=terminals,
        timeouts=timeouts,
    )
    return ds, obs, buf.data["action"].astype(np.float32)


def d3rlpy_iql(obs: np.ndarray, actions: np.ndarray, steps: int):
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.optimizers import AdamFactory
    from d3rlpy.optimizers.lr_schedulers import CosineAnnealingLRFactory

    return d3rlpy.algos.IQLConfig(
        observation_scaler=d3rlpy.preprocessing.MinMaxObservationScaler(
            minimum=obs.min(0), maximum=obs.max(0)
        ),
        action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=actions.min(0), maximum=actions.max(0)),
        actor_encoder_factory=VectorEncoderFactory([256, 256], activation="swish", use_layer_norm=True),
        critic_encoder_factory=VectorEncoderFactory([256, 256]),
        value_encoder_factory=VectorEncoderFactory([256, 256]),
        actor_optim_factory=AdamFactory(lr_scheduler_factory=CosineAnnealingLRFactory(T_max=steps)),
        batch_size=256,
        expectile=0.9,
        weight_temp=10.0,
        max_weight=100.0,
        n_critics=2,
    ).create(device="cpu")


class D3Policy:
    """d3rlpy's greedy action behind the evaluator's contract (one step at a time)."""

    def __init__(self, algo, keys: list[str], spec) -> None:
        self.algo, self.keys, self.spec = algo, keys, spec
        self.will_plan = True

    def reset(self) -> None:
        pass

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.concatenate([np.asarray(obs[k], np.float32) for k in self.keys])[None]
        return np.clip(self.algo.predict(x)[0], self.spec.action_low, self.spec.action_high).astype(
            np.float32
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--task", default="push")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = O2OConfig(algo="iql", data=O2OData(path=args.data), steps=args.steps)
    replay, keys, _, spec, stats = load_offline(cfg.data.paths, 1)
    ours = make_learner(cfg, spec, stats)
    ds, obs, actions = d3rlpy_dataset(args.data, keys)
    theirs = d3rlpy_iql(obs, actions, args.steps)
    theirs.build_with_dataset(ds)
    rng = np.random.default_rng(0)
    per_round = args.steps // args.rounds
    seconds = {"robostack": 0.0, "d3rlpy": 0.0}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            ours.update(to_tensors(replay.sample(256, rng), ours.critics.device))
        seconds["robostack"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(per_round):
            theirs.update(ds.sample_transition_batch(256))
        seconds["d3rlpy"] += time.perf_counter() - t0
    steps = per_round * args.rounds
    # the update alone, on one pre-sampled batch each
    batch_ours = to_tensors(replay.sample(256, rng), ours.critics.device)
    batch_theirs = ds.sample_transition_batch(256)
    upd = {}
    for name, fn in (
        ("robostack", lambda: ours.update(batch_ours)),
        ("d3rlpy", lambda: theirs.update(batch_theirs)),
    ):
        t0 = time.perf_counter()
        for _ in range(200):
            fn()
        upd[name] = 200 / (time.perf_counter() - t0)
    first = seed_range("test").seeds(args.episodes).start
    with tempfile.TemporaryDirectory() as tmp:
        save_policy(ours.actor, Path(tmp) / "iql", stats)
        r_ours = evaluate(Path(tmp) / "iql", args.task, args.episodes, 2, first, progress=False)
    r_theirs = evaluate_in_process(
        D3Policy(theirs, keys, spec), "d3rlpy IQL", args.task, args.episodes, first
    )
    sps = {k: steps / v for k, v in seconds.items()}
    rows = [
        (name, f"{sps[name]:.1f}", f"{upd[name]:.1f}",
         f"{100 * r.success_rate:.1f}% ({100 * r.ci95[0]:.0f}-{100 * r.ci95[1]:.0f})")
        for name, r in (("robostack", r_ours), ("d3rlpy", r_theirs))
    ]  # fmt: skip
    _, task, _ = check_stores([args.data])
    table = format_markdown(
        [
            "IQL",
            "gradient steps/s (with sampling)",
            "updates/s (update only)",
            f"offline success, {args.episodes} test",
        ],
        rows,
    )
    ratio = f"speed ratio {sps['robostack'] / sps['d3rlpy']:.2f}x with sampling, {upd['robostack'] / upd['d3rlpy']:.2f}x update only"
    sep = (
        "intervals overlap: no difference shown"
        if r_ours.ci95[0] <= r_theirs.ci95[1] and r_theirs.ci95[0] <= r_ours.ci95[1]
        else "intervals separate"
    )
    text = f"{table}\n\n{ratio}; success {sep} ({steps} steps each, {task}, {args.threads} threads)"
    print(text)
    if args.out:
        Path(args.out).write_text(
            f"# IQL: robostack vs d3rlpy 2.8.1 ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)\n\n"
            f"`python benchmarks/iql_d3rlpy.py --data {args.data} --steps {args.steps} --rounds {args.rounds} "
            f"--episodes {args.episodes}`\n\n{text}\n"
        )


if __name__ == "__main__":
    main()
