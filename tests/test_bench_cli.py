"""``robostack bench`` through the CLI on a tiny suite: datasets from recipes, robostack and LeRobot side by side,
Markdown + JSON + PNG report."""

from __future__ import annotations

import json
import shutil

from robostack.config import load_yaml

from conftest import assert_one_line_error, run_cli

SUITE = """
name: tiny
side_by_side_chunk: 5
runs:
  - name: push-diffusion
    dataset: push_expert_20
    policy: diffusion_push
    overrides: {steps: 20, save_every: 10, policy.unet.down_dims: "[16,32,64]", policy.unet.step_embed_dim: 32,
                optim.batch_size: 16}
    eval: {task: push, episodes: 2, workers: 1}
  - name: push-lerobot
    dataset: push_expert_20
    policy: lerobot_diffusion
    like: diffusion_push
    side_by_side: push-diffusion
    overrides: {steps: 20, log_every: 10, policy.unet.down_dims: "[16,32,64]", policy.unet.step_embed_dim: 32,
                optim.batch_size: 16}
    eval: {task: push, episodes: 2}
"""


def test_bench_runs_a_suite_with_lerobot_side_by_side(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "bench"
    proc = run_cli("bench", "--suite", suite, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "push-diffusion and push-lerobot train side by side, alternating every 5 steps" in proc.stdout
    results = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    assert set(results) == {"push-diffusion", "push-lerobot"}
    assert results["push-lerobot"]["policy"] == "lerobot_diffusion"
    assert results["push-lerobot"]["side_by_side"] == "push-diffusion"
    assert results["push-diffusion"]["side_by_side"] == "push-lerobot"
    for r in results.values():
        assert r["episodes"] == 2 and r["samples_per_s"] > 0 and r["latency_p50_ms"] > 0
    report = (out / "results.md").read_text()
    assert "push-lerobot" in report and "push-diffusion vs push-lerobot: trains" in report
    assert "trained side by side in one process" in report
    assert results["push-diffusion"]["train_seconds"] > 0
    # LeRobot's pace is logged like a robostack run's (step, train_s), for a step-by-step comparison
    paced = [
        json.loads(x) for x in (out / "runs" / "push-lerobot" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in paced] == [10, 20]
    assert 0 < paced[0]["train_s"] < paced[1]["train_s"] <= results["push-lerobot"]["train_seconds"]
    # re-running finds the trained checkpoint and reports the training time recorded in the run's metrics
    again = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-diffusion", check=True)
    assert "train diffusion" in again.stdout
    rerun = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    assert rerun["push-diffusion"]["train_seconds"] == results["push-diffusion"]["train_seconds"]
    # a run killed after its checkpoint at step 10 resumes from there, and its metrics forget the lost steps
    run = out / "runs/push-diffusion"
    (run / "checkpoints/last").write_text("step_00000010")
    shutil.rmtree(run / "checkpoints/step_00000020")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 2')  # the line the kill cut short
    resumed = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-diffusion", check=True)
    assert "resuming push-diffusion at step 10" in resumed.stdout
    assert (run / "checkpoints/last").read_text() == "step_00000020"
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20 and len(steps) == len(set(steps))
    # a longer recipe is another learning-rate schedule: it trains afresh and the finished run is set aside
    suite.write_text(SUITE.replace("steps: 20,", "steps: 30,", 1))
    longer = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-diffusion", check=True)
    assert "recipe changed (steps)" in longer.stdout
    assert (out / "runs/push-diffusion.previous-1/checkpoints/last").read_text() == "step_00000020"
    assert (run / "checkpoints/last").read_text() == "step_00000030"
    final = {r["name"]: r for r in json.loads((out / "results.json").read_text())}["push-diffusion"]
    assert final["steps"] == 30
    # a changed recipe (another U-Net) trains afresh too
    suite.write_text(SUITE.replace("steps: 20,", "steps: 30,", 1).replace("[16,32,64]", "[16,32,48]", 1))
    changed = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-diffusion", check=True)
    assert "recipe changed (policy.unet.down_dims)" in changed.stdout
    assert (out / "runs/push-diffusion.previous-2/checkpoints/last").read_text() == "step_00000030"
    assert load_yaml(out / "runs/push-diffusion/config.yaml")["policy"]["unet"]["down_dims"] == [16, 32, 48]
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "datasets" / "push_expert_20.zarr" / "zarr.json").exists()


def test_unknown_suite_is_one_line(tmp_path):
    assert_one_line_error(run_cli("bench", "--suite", "nope"), "unknown benchmark suite 'nope'")
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE.replace("side_by_side: push-diffusion", "side_by_side: push-difusion"))
    assert_one_line_error(
        run_cli("bench", "--suite", suite, "--out", tmp_path / "b"),
        "run 'push-lerobot' trains side by side with unknown run 'push-difusion'",
    )


def test_lerobot_comparison_pairs_runs_of_the_same_recipe():
    from robostack.bench.report import lerobot_ratios
    from robostack.bench.results import RunResult

    def row(name, policy, recipe, train_s, success, steps=20000):
        return RunResult(
            name,
            "push",
            policy,
            "push_expert_200",
            50,
            steps,
            train_s,
            100.0,
            success,
            0.0,
            1.0,
            1.0,
            1.0,
            0.5,
            recipe,
            "test",
        )

    rows = [
        row("push-lerobot", "lerobot_diffusion", "diffusion_push", 3000.0, 0.86),
        row("push-diffusion", "diffusion", "diffusion_push", 2000.0, 0.88),
        row("push-diffusion-large", "diffusion", "diffusion_large", 5000.0, 0.94),
        row("push-diffusion-8k", "diffusion", "diffusion_push", 800.0, 0.90, steps=8000),
    ]
    lines = lerobot_ratios(rows)
    assert lines == [
        "push-diffusion vs push-lerobot: trains 1.50x faster (2000.0 s vs 3000.0 s for 20000 steps, compile "
        "included), success 88% vs 86%"
    ]


def test_earlier_rows_are_kept_and_unreadable_reports_are_not_overwritten(tmp_path):
    import pytest

    from robostack.bench.results import RunResult, merge_previous
    from robostack.errors import RobostackError

    row = dict(
        name="push-flow", task="push", policy="flow", dataset="push_expert_200", episodes=50, steps=20000,
        train_seconds=1.0, samples_per_s=1.0, success_rate=0.76, ci_low=0.6, ci_high=0.9,
        latency_p50_ms=1.0, latency_p99_ms=2.0, rms_jerk=0.5, recipe="flow_push", seed_range="test",
    )  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps([row, {**row, "name": "push-diffusion"}]))
    fresh = RunResult(**{**row, "name": "push-diffusion", "success_rate": 0.9})
    merged = merge_previous([fresh], tmp_path)
    assert [(r.name, r.success_rate) for r in merged] == [("push-flow", 0.76), ("push-diffusion", 0.9)]
    for unreadable in ("{not json", json.dumps([{**row, "future_field": 1}])):
        (tmp_path / "results.json").write_text(unreadable)
        with pytest.raises(RobostackError, match="cannot read the earlier results"):
            merge_previous([fresh], tmp_path)


def test_every_shipped_suite_builds_its_datasets_and_training_configs(tmp_path):
    """A typo in a suite, recipe or override would otherwise surface hours into a benchmark."""
    from robostack.bench.finetune_suite import entry_config
    from robostack.bench.results import recipe_of
    from robostack.bench.runner import RECIPES, SUITES, load_suite, train_config
    from robostack.sim.demos import DemoConfig

    suites = sorted(SUITES.glob("*.yaml"))
    assert {p.stem for p in suites} >= {"smoke", "standard", "dart"}
    for path in suites:
        for run in load_suite(str(path))["runs"]:
            recipe = load_yaml(RECIPES / f"{run['dataset']}.yaml")
            DemoConfig(out=str(tmp_path / "d.zarr"), **recipe)
            overrides = [f"{k}={v}" for k, v in (run.get("overrides") or {}).items()]
            cfg = train_config(recipe_of(run), tmp_path / "d.zarr", overrides)
            assert cfg.steps > 0 and run["eval"]["task"] in {"push", "lift", "can"}, (path.name, run["name"])
        for entry in load_suite(str(path)).get("finetune") or []:
            cfg = entry_config(entry, tmp_path / "runs" / entry["from"])
            assert cfg.iterations > 0 and cfg.task == entry["task"], (path.name, entry["name"])


def test_an_interrupted_dataset_is_made_again(tmp_path):
    from robostack.bench.runner import make_dataset
    from robostack.data import EpisodeStore
    from robostack.sim.demos import DemoConfig, generate_demos

    path = tmp_path / "datasets" / "push_expert_20.zarr"
    # as if the bench was killed after 3 of the recipe's 20 episodes
    generate_demos(DemoConfig(task="push", episodes=3, out=str(path), workers=1))
    assert make_dataset("push_expert_20", tmp_path) == path
    assert EpisodeStore(path).n_episodes == 20
    mtime = (path / "zarr.json").stat().st_mtime_ns
    make_dataset("push_expert_20", tmp_path)  # complete: kept as it is
    assert (path / "zarr.json").stat().st_mtime_ns == mtime


FINETUNE_SUITE = """
name: tiny-finetune
runs:
  - name: push-diffusion
    dataset: push_expert_20
    policy: diffusion_push
    overrides: {steps: 20, policy.n_action_steps: 2, policy.unet.down_dims: "[16,32,64]", policy.unet.step_embed_dim: 32,
                optim.batch_size: 16}
    eval: {task: push, episodes: 1, workers: 1, seeds: selection}
finetune:
  - {name: push-dppo, algo: dppo, from: push-diffusion, task: push, iterations: 2, envs: 2, steps_per_iteration: 4,
     eval_every: 1, eval_episodes: 1, test_episodes: 2, overrides: {ft_denoising_steps: 3}}
generated_data:
  - name: gen
    task: push
    episodes: 20
    test_episodes: 2
    policy: diffusion_push
    overrides: {steps: 10, data.success_only: false, policy.n_action_steps: 8, policy.unet.down_dims: "[16,32,64]", policy.unet.step_embed_dim: 32,
                optim.batch_size: 16}
    sources: [{name: dppo, from: push-dppo, keep: all}, {name: expert, recipe: push_expert_20}]
"""


def test_bench_fine_tunes_a_suite_run_and_reports_start_and_final(tmp_path):
    suite = tmp_path / "ft.yaml"
    suite.write_text(FINETUNE_SUITE)
    out = tmp_path / "bench"
    proc = run_cli("bench", "--suite", suite, "--out", out, "--eval-workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((out / "finetune/push-dppo/finetune_result.json").read_text())
    assert row["algo"] == "dppo" and row["iterations"] == 2
    # at most iterations x envs x decisions x actions per decision (a chunk cut by its episode's end runs fewer)
    assert 0 < row["curve"][0][0] < row["curve"][1][0] == row["env_steps"] <= 2 * 2 * 4 * 2
    assert all(row["per_iteration_s"][k] > 0 for k in ("policy_s", "sim_s", "update_s"))
    for phase in ("start", "final"):
        assert row[phase]["episodes"] == 2 and row[phase]["test_seeds"] == [1_000_000, 1_000_001]
    assert load_yaml(out / "finetune/push-dppo/config.yaml")["ft_denoising_steps"] == 3
    report = (out / "finetune.md").read_text()
    assert (
        "push-dppo (dppo)" in report and "goal >= 90%" in report and (out / "finetune.png").stat().st_size > 0
    )
    gen = json.loads((out / "generated/gen/generated_result.json").read_text())
    assert [r["source"] for r in gen["rows"]] == ["dppo", "expert"]
    assert gen["rows"][0]["data"]["sources"] == {"generated": 20} and gen["rows"][1]["data"]["sources"] == {
        "sim": 20
    }
    for r in gen["rows"]:
        assert (
            r["data"]["episodes"] == 20
            and r["policy"]["episodes"] == 2
            and r["test_seeds"] == [1_000_000, 1_000_001]
        )
    text = (out / "generated-gen.md").read_text()
    assert "policy on dppo data vs on expert data" in text and (out / "generated/gen/paths.png").is_file()
    again = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-dppo", check=True)
    assert "push-dppo: done before" in again.stdout
    # successes from a policy that never succeeds would take hours of rollouts: refused up front
    suite.write_text(
        FINETUNE_SUITE.replace("from: push-dppo, keep: all}", "from: push-dppo}").replace(
            "name: gen", "name: gen2"
        )
    )
    assert_one_line_error(
        run_cli("bench", "--suite", suite, "--out", out, "--only", "gen2"), "too rarely to generate 20"
    )
    suite.write_text(FINETUNE_SUITE.replace("from: push-diffusion,", "from: push-difusion,"))
    assert_one_line_error(
        run_cli("bench", "--suite", suite, "--out", out),
        "starting run among the suite's runs (unknown run: push-difusion)",
    )


INTERACTIVE_SUITE = """
name: tiny-interactive
runs:
  - name: push-start
    dataset: push_expert_20
    policy: gaussian_push
    overrides: {steps: 40, policy.n_obs_steps: 1, policy.horizon: 1, policy.n_action_steps: 1, policy.hidden_dims: "[32,32]"}
    eval: {task: push, episodes: 1, workers: 1, seeds: selection}
interactive:
  - {name: push-rlif, algo: rlif, from: push-start, task: push, intervener: {rule: deviation}, expert_level: 0.6,
     env_steps: 240, envs: 4, eval_every: 120, eval_episodes: 1, test_episodes: 2, learning_starts: 100, log_every: 40,
     updates_per_env_step: 0.25, overrides: {sac.batch_size: 32, sac.critics: 4, sac.hidden: "[32,32]"}}
  - {name: push-hg, algo: hg-dagger, from: push-start, task: push, intervener: {rule: deviation}, expert_level: 0.6,
     env_steps: 240, envs: 4, rounds: 2, bc_steps: 20, eval_episodes: 1, test_episodes: 2}
"""


def test_bench_interactive_compares_rlif_and_hg_dagger_with_the_expert(tmp_path):
    suite = tmp_path / "int.yaml"
    suite.write_text(INTERACTIVE_SUITE)
    out = tmp_path / "bench"
    proc = run_cli("bench", "--suite", suite, "--out", out, "--eval-workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {
        n: json.loads((out / f"interactive/{n}/interactive_result.json").read_text())
        for n in ("push-rlif", "push-hg")
    }
    for r in rows.values():
        assert r["expert_level"] == 0.6 and r["intervener"] == "deviation" and r["env_steps"] == 240
        for phase in ("start", "final", "expert"):
            assert r[phase]["episodes"] == 2 and r[phase]["test_seeds"] == [1_000_000, 1_000_001]
        assert r["interventions"] and all(0.0 <= v <= 1.0 for _, v in r["interventions"])
    assert [s for s, _ in rows["push-rlif"]["curve"]] == [120, 240]
    assert [s for s, _ in rows["push-hg"]["curve"]] == [120, 240]  # one point per round
    assert rows["push-rlif"]["start"] == rows["push-hg"]["start"]  # one start, evaluated once
    report = (out / "interactive.md").read_text()
    assert "RLIF" in report and "HG-DAgger" in report and "against the expert" in report
    assert (out / "interactive.png").stat().st_size > 0
    again = run_cli("bench", "--suite", suite, "--out", out, "--only", "push-hg", check=True)
    assert "push-hg: done before" in again.stdout
