"""The step-wise vector environment: seeds, auto-reset, s' at episode ends, time limits, worker independence."""

from __future__ import annotations

import numpy as np
import pytest

from robostack.errors import RobostackError
from robostack.sim.registry import make_task
from robostack.sim.vector_env import VectorEnv


def _rollout(env: VectorEnv, steps: int, rng: np.random.Generator) -> list:
    out = [env.reset()]
    for _ in range(steps):
        out.append(env.step(rng.uniform(-1, 1, (env.num_envs, 2)).astype(np.float32)))
    return out


def test_same_episodes_in_process_and_across_workers():
    with VectorEnv("push", 4, seed=2_000_000) as a, VectorEnv("push", 4, seed=2_000_000, workers=2) as b:
        ra, rb = _rollout(a, 30, np.random.default_rng(0)), _rollout(b, 30, np.random.default_rng(0))
    for k in ra[0]:
        np.testing.assert_array_equal(ra[0][k], rb[0][k])
    for sa, sb in zip(ra[1:], rb[1:], strict=True):
        for k in sa.obs:
            np.testing.assert_array_equal(sa.obs[k], sb.obs[k])
            np.testing.assert_array_equal(sa.final_obs[k], sb.final_obs[k])
        np.testing.assert_array_equal(sa.reward, sb.reward)


def test_each_copy_starts_its_seeded_episode_and_resets_on_its_own():
    n, seed = 3, 2_000_000
    with VectorEnv("push", n, seed=seed) as env:
        obs = env.reset()
        single = make_task("push")
        for i in range(n):
            first, _ = single.reset(seed=seed + i)
            np.testing.assert_array_equal(obs["obs/object"][i], first["object"])
        # the experts solve their episodes; each copy then starts episode k = 1 with seed + i + n
        ends: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        for _ in range(200):
            step = env.step(env.expert_actions())
            for i in np.flatnonzero(step.done):
                if i not in ends:
                    ends[int(i)] = (
                        int(step.episode_seed[i]),
                        step.final_obs["obs/object"][i],
                        step.obs["obs/object"][i],
                    )
            if len(ends) == n:
                break
        assert len(ends) == n
        for i, (ep_seed, final, now) in ends.items():
            assert ep_seed == seed + i
            nxt, _ = single.reset(seed=seed + i + n)
            np.testing.assert_array_equal(now, nxt["object"])  # auto-reset: the next episode's first obs
            assert not np.array_equal(final, now)  # s' is where the finished episode ended


def test_time_limit_truncates():
    with VectorEnv("push", 2, seed=2_000_000) as env:
        env.reset()
        limit = env.spec.max_steps
        for t in range(limit):
            step = env.step(np.zeros((2, 2), np.float32))  # standing still never succeeds
            if t < limit - 1:
                assert not step.done.any()
        assert step.truncated.all() and not step.terminated.any()
        assert (step.episode_length == limit).all() and (step.episode_seed == [2_000_000, 2_000_001]).all()


def test_bad_actions_are_refused():
    with VectorEnv("push", 2, seed=0) as env:
        env.reset()
        with pytest.raises(RobostackError, match="shape"):
            env.step(np.zeros((3, 2)))
        with pytest.raises(RobostackError, match="NaN"):
            env.step(np.full((2, 2), np.nan))
    with pytest.raises(RobostackError, match="workers"):
        VectorEnv("push", 2, seed=0, workers=3)
    with pytest.raises(RobostackError, match="simulation worker failed"):
        VectorEnv("nope", 2, seed=0, workers=1)


def test_chunks_match_single_steps_and_end_episodes_mid_chunk():
    rng = np.random.default_rng(3)
    chunks = rng.uniform(-1, 1, (5, 3, 4, 2)).astype(np.float32)  # 5 decisions, 3 copies, T_a = 4
    with VectorEnv("push", 3, seed=2_000_000) as a, VectorEnv("push", 3, seed=2_000_000, workers=2) as b:
        a.reset()
        first = b.reset()
        for c in chunks:
            for t in range(4):
                single = a.step(c[:, t])
            chunked = b.step_chunk(c, history=2)
            assert (chunked.executed == 4).all() and not chunked.done.any()
            np.testing.assert_array_equal(chunked.final_obs["obs/state"], single.final_obs["obs/state"])
            np.testing.assert_array_equal(chunked.obs_history["obs/state"][:, -1], single.obs["obs/state"])
        assert chunked.obs_history["obs/object"].shape == (3, 2, 6)
        # the history's older frame is the observation one step before the newest
        assert not np.array_equal(
            chunked.obs_history["obs/state"][:, 0], chunked.obs_history["obs/state"][:, 1]
        )
        assert not np.array_equal(first["obs/state"], chunked.obs_history["obs/state"][:, -1])
    with VectorEnv("push", 2, seed=2_000_000) as env:
        env.reset()
        limit, t_a, done = env.spec.max_steps, 7, 0
        while done + t_a <= limit:
            step = env.step_chunk(np.zeros((2, t_a, 2), np.float32), history=2)
            done += t_a
        assert not step.done.any()
        step = env.step_chunk(np.zeros((2, t_a, 2), np.float32), history=2)
        assert step.truncated.all() and (step.executed == limit - done).all()
        # the next episode starts with its first observation repeated as the history
        np.testing.assert_array_equal(
            step.obs_history["obs/object"][:, 0], step.obs_history["obs/object"][:, 1]
        )
        with pytest.raises(RobostackError, match="chunks have shape"):
            env.step_chunk(np.zeros((2, 2)))


def _continue(env: VectorEnv, actions: np.ndarray) -> list[tuple]:
    out = []
    for a in actions:
        expert = env.expert_actions()
        s = env.step(a)
        out.append((expert, s.obs, s.final_obs, s.reward, s.done, s.episode_seed))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        for k in x[1]:
            np.testing.assert_array_equal(x[1][k], y[1][k])
            np.testing.assert_array_equal(x[2][k], y[2][k])
        for i in range(3, 6):
            np.testing.assert_array_equal(x[i], y[i])


@pytest.mark.parametrize(
    ("task", "n", "before", "after", "workers"), [("push", 3, 40, 300, 2), ("lift", 1, 12, 12, 0)]
)
def test_a_snapshot_continues_every_copy_exactly(task, n, before, after, workers):
    """Mid-episode snapshots restore into a fresh VectorEnv (another worker split) and continue bit for bit:
    simulator, degraded expert, episode counters and seeds (push ends episodes on both sides of the snapshot).
    Robosuite's controllers read kinematics cached at the last substep's start, so its snapshot is MuJoCo's whole
    data, not the integration state alone (which drifts 0.5 mm on Lift's first step)."""
    rng = np.random.default_rng(0)
    level = 0.6 if task == "push" else 1.0
    with VectorEnv(task, n, 77, 0, expert_level=level) as env:
        env.reset()
        da = env.spec.action.shape[0]
        for _ in range(before):
            env.step(rng.uniform(-1, 1, (n, da)).astype(np.float32))
        snap = env.snapshot()
        actions = rng.uniform(-1, 1, (after, n, da)).astype(np.float32)
        first = _continue(env, actions)
    if task == "push":
        assert sum(int(r[4].sum()) for r in first) > 0
    with VectorEnv(task, n, 77, workers, expert_level=level) as again:
        again.restore(snap)
        _assert_same(first, _continue(again, actions))
    with VectorEnv(task, n + 1, 77, 0) as other, pytest.raises(RobostackError, match=f"holds {n} copies"):
        other.restore(snap)
