"""``robostack quickstart``: the main job, one readable pipeline whose stages each write into one run folder.

1. expert ``push`` demonstrations into a store;  2. validate it;  3. dataset summary;  4. trajectory plot;
5. train a diffusion policy on them (``configs/policies/diffusion_push.yaml``);  6. evaluate it in simulation;
7. fine-tune it with DPPO in parallel simulated copies (the task's success reward);  8. evaluate the fine-tuned
policy on the same seeds, beside the behaviour-cloned one;  9. export the final policy to ONNX (parity checked);
10. evaluate the ONNX model on the same seeds, latency beside PyTorch's;  11. run the ONNX model in closed loop
through ROS 2 (sim_robot_node + policy_node processes over DDS).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robostack.cli.dataclass_args import add_dataclass_args, dataclass_from_args
from robostack.errors import RobostackError
from robostack.eval.seeds import RANGES
from robostack.utils.table import format_table


@dataclass
class QuickstartConfig:
    out: str = field(default="runs/quickstart", metadata={"help": "run folder; every stage writes into it"})
    task: str = field(
        default="push",
        metadata={"help": "simulated task (the trajectory plot is push's)", "choices": ["push"]},
    )
    episodes: int = field(default=200, metadata={"help": "expert demonstrations to record"})
    workers: int = field(default=2, metadata={"help": "simulation processes"})
    seed: int = field(default=0, metadata={"help": "seed of the demonstrations and the training"})
    train_steps: int = field(default=6000, metadata={"help": "diffusion-policy training steps"})
    n_action_steps: int = field(
        default=2,
        metadata={
            "help": "actions executed per chunk (push: 2, chosen on selection seeds in the standard suite)"
        },
    )
    dppo_iterations: int = field(
        default=10,
        metadata={"help": "DPPO fine-tuning iterations after behaviour cloning; 0 skips the stage"},
    )
    dppo_envs: int = field(default=8, metadata={"help": "simulated copies DPPO rolls out in"})
    compile: bool = field(
        default=True,
        metadata={"help": "train eager instead of compiling the loss (a one-off compile of minutes, then each step "
                  "~1.9x faster; eager suits runs of a few steps)"},
    )  # fmt: skip
    eval_episodes: int = field(default=20, metadata={"help": "evaluation episodes (test seed range)"})
    policy_config: str = field(
        default="configs/policies/diffusion_push.yaml",
        metadata={
            "help": "policy recipe YAML (as for robostack train --config); steps and data are the quickstart's"
        },
    )
    ros_episodes: int = field(
        default=5,
        metadata={"help": "closed-loop ROS 2 episodes (real time, up to 10 s each); 0 skips the stage"},
    )


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the main job on built-in defaults (demos -> validate -> summary -> plot -> train -> eval -> DPPO -> "
        "eval -> export -> eval ONNX -> ROS 2)",
    )
    add_dataclass_args(p, QuickstartConfig)
    p.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args: argparse.Namespace) -> int:
    run_quickstart(dataclass_from_args(QuickstartConfig, args))
    return 0


def _stage(n: int, title: str) -> None:
    print(f"\n== stage {n}: {title}", flush=True)


def run_quickstart(cfg: QuickstartConfig) -> dict:
    run = Path(cfg.out)
    store = run / "demos.zarr"
    train_cfg = _train_config(cfg, store)  # a bad recipe is refused before minutes of work
    if store.exists():
        shutil.rmtree(store)  # the quickstart is reproducible from its config, so it starts clean
    run.mkdir(parents=True, exist_ok=True)
    (run / "quickstart.json").write_text(json.dumps(asdict(cfg), indent=1))
    t0 = time.perf_counter()
    result = _data_stages(cfg, run, store)
    result.update(_policy_stages(cfg, run, train_cfg))
    result["ros"] = _ros_stage(cfg, run, result.pop("_ev_onnx"))
    result["seconds"] = time.perf_counter() - t0
    (run / "result.json").write_text(json.dumps(result, indent=1))
    ros = result["ros"]
    print(
        f"\nquickstart done in {result['seconds']:.0f} s: demonstrations {100 * result['demo_success_rate']:.0f}% "
        f"successful, diffusion policy {100 * result['bc_success_rate']:.0f}%"
        + (f", after DPPO {100 * result['policy_success_rate']:.0f}%" if result["dppo"] else "")
        + f", as ONNX "
        f"{100 * result['onnx_success_rate']:.0f}% at {result['onnx_chunk_latency_p50_ms']:.1f} ms per chunk"
        + (f", through ROS 2 {ros['successes']}/{ros['episodes']}" if ros else "")
        + f"; results in {run}/"
    )
    return result


def _data_stages(cfg: QuickstartConfig, run: Path, store: Path) -> dict[str, Any]:
    """Stages 1-4: record, validate, summarise, plot."""
    from robostack.data.buffer import load_buffer
    from robostack.data.info import format_summary, store_summary
    from robostack.data.validate import validate_store
    from robostack.sim.demos import DemoConfig, generate_demos
    from robostack.sim.push_plot import plot_push_trajectories

    _stage(1, f"{cfg.episodes} expert '{cfg.task}' demonstrations -> {store}")
    demos = DemoConfig(
        task=cfg.task,
        episodes=cfg.episodes,
        quality="expert",
        out=str(store),
        workers=cfg.workers,
        seed=cfg.seed,
    )
    summary = generate_demos(demos)
    print(summary.table())
    _stage(2, "validate the store")
    errors = [f for f in validate_store(store) if f.severity == "error"]
    if errors:
        raise RobostackError(f"{store}: {errors[0].message}")
    print(f"{store}: ok")
    _stage(3, "dataset summary")
    info = store_summary(store)
    print(format_summary(info))
    _stage(4, "trajectory plot")
    png = plot_push_trajectories(load_buffer(store, ["obs/state", "obs/object"]), run / "trajectories.png")
    print(f"wrote {png}")
    return {
        "store": str(store),
        "episodes": info["episodes"],
        "demo_success_rate": info["success_rate"],
        "env_steps_per_s": summary.steps_per_s,
        "plot": str(png),
    }


def _policy_stages(cfg: QuickstartConfig, run: Path, train_cfg: Any) -> dict[str, Any]:
    """Stages 5-10: train, evaluate, fine-tune with DPPO, evaluate again, export the final policy, evaluate the
    exported model on the same seeds."""
    from robostack.algos.bc import train
    from robostack.eval.evaluate import evaluate
    from robostack.export import ExportConfig, export_policy

    policy_run = run / "policy"
    _stage(5, f"train a diffusion policy ({cfg.train_steps} steps) -> {policy_run}")
    if policy_run.exists():
        shutil.rmtree(policy_run)
    t_train = time.perf_counter()
    train(train_cfg, policy_run)
    train_s = time.perf_counter() - t_train
    print(f"trained in {train_s:.0f} s; training curve: {policy_run / 'training_curve.png'}")
    _stage(6, f"evaluate it on {cfg.eval_episodes} unseen '{cfg.task}' episodes")
    ev_bc = evaluate(policy_run, cfg.task, cfg.eval_episodes, cfg.workers, seed=RANGES["test"].start)
    (run / "eval_bc.json").write_text(json.dumps(ev_bc.to_json(), indent=1))
    print(ev_bc.table())
    final, ev, dppo = policy_run, ev_bc, _dppo_stages(cfg, run, policy_run, ev_bc)
    if dppo:
        final, ev = Path(dppo["run"]), dppo["_eval"]
    (run / "eval.json").write_text(json.dumps(ev.to_json(), indent=1))
    _stage(9, f"export the final policy to ONNX -> {run / 'model.onnx'}")
    report = export_policy(ExportConfig(policy=str(final), out=str(run / "model.onnx")))
    print(report.table())
    _stage(10, f"evaluate the ONNX model on the same {cfg.eval_episodes} seeds (onnxruntime, CPU)")
    ev_onnx = evaluate(
        run / "model.onnx", cfg.task, cfg.eval_episodes, cfg.workers, seed=RANGES["test"].start
    )
    (run / "eval_onnx.json").write_text(json.dumps(ev_onnx.to_json(), indent=1))
    rows = [
        (name, f"{100 * e.success_rate:.0f}% ({100 * e.ci95[0]:.0f}-{100 * e.ci95[1]:.0f})",
         f"{e.latency_p50_ms:.2f} / {e.latency_p99_ms:.2f}")
        for name, e in (("behaviour cloning (PyTorch)", ev_bc),
                        *((("after DPPO (PyTorch)", ev),) if dppo else ()),
                        ("final, ONNX (onnxruntime)", ev_onnx))
    ]  # fmt: skip
    print(format_table(["policy / backend", "success (95% CI)", "chunk latency p50 / p99 ms"], rows))
    return {
        "policy": str(final),
        "train_seconds": train_s,
        "bc_success_rate": ev_bc.success_rate,
        "dppo": {k: v for k, v in dppo.items() if not k.startswith("_")} if dppo else None,
        "policy_success_rate": ev.success_rate,
        "policy_success_ci95": list(ev.ci95),
        "chunk_latency_p50_ms": ev.latency_p50_ms,
        "training_curve": str(policy_run / "training_curve.png"),
        "onnx_model": report.path,
        "onnx_parity_max_abs": report.parity_max_abs,
        "onnx_success_rate": ev_onnx.success_rate,
        "onnx_chunk_latency_p50_ms": ev_onnx.latency_p50_ms,
        "_ev_onnx": ev_onnx,
    }


def _dppo_stages(cfg: QuickstartConfig, run: Path, policy_run: Path, ev_bc: Any) -> dict[str, Any]:
    """Stages 7-8: DPPO from the behaviour-cloned policy, then the same evaluation; {} when skipped."""
    from robostack.algos.dppo import DPPOConfig
    from robostack.algos.registry import run_algorithm
    from robostack.eval.evaluate import evaluate

    if cfg.dppo_iterations < 1:
        return {}
    dppo_run = run / "dppo"
    _stage(
        7, f"fine-tune it with DPPO: {cfg.dppo_iterations} iterations in {cfg.dppo_envs} copies -> {dppo_run}"
    )
    if dppo_run.exists():
        shutil.rmtree(dppo_run)
    t0 = time.perf_counter()
    dcfg = DPPOConfig(from_run=str(policy_run), task=cfg.task, iterations=cfg.dppo_iterations, envs=cfg.dppo_envs,
                      eval_every=0, eval_episodes=0, seed=cfg.seed)  # fmt: skip
    run_algorithm("dppo", "finetune", dcfg, dppo_run)
    seconds = time.perf_counter() - t0
    _stage(8, f"evaluate the fine-tuned policy on the same {cfg.eval_episodes} seeds")
    ev = evaluate(dppo_run, cfg.task, cfg.eval_episodes, cfg.workers, seed=RANGES["test"].start)
    print(
        format_table(
            ["same seeds", "success (95% CI)"],
            [(name, f"{100 * e.success_rate:.0f}% ({100 * e.ci95[0]:.0f}-{100 * e.ci95[1]:.0f})")
             for name, e in (("before DPPO", ev_bc), ("after DPPO", ev))],
        )
    )  # fmt: skip
    return {"run": str(dppo_run), "seconds": seconds, "iterations": cfg.dppo_iterations,
            "success_rate": ev.success_rate, "_eval": ev}  # fmt: skip


def _ros_stage(cfg: QuickstartConfig, run: Path, ev_onnx: Any) -> dict[str, Any] | None:
    n = min(cfg.ros_episodes, cfg.eval_episodes)
    if n < 1:
        return None
    _stage(11, f"run the ONNX model in closed loop through ROS 2 on the first {n} seeds (real time)")
    try:
        from robostack.ros.closed_loop import ClosedLoopConfig, run_closed_loop
    except ImportError as exc:
        print(f"skipped: ROS 2 is not installed here ({exc})")
        return None
    res = run_closed_loop(ClosedLoopConfig(str(run / "model.onnx"), cfg.task, n, seed=RANGES["test"].start))
    same = ev_onnx.per_episode[:n]
    in_proc = sum(e["success"] for e in same)
    (run / "eval_ros.json").write_text(json.dumps(res.to_json(), indent=1))
    print(
        format_table(
            ["same seeds", "success"],
            [("in-process (onnxruntime)", f"{in_proc}/{n}"), ("ROS 2 closed loop", f"{res.successes}/{n}")],
        )
    )
    st = res.policy_status
    print(
        f"policy node: {st.get('rate_hz')} Hz, obs-to-command p50/p99 {st.get('obs_to_command_ms_p50_p99')} ms"
    )
    return {"episodes": n, "successes": res.successes, "in_process_successes": in_proc, "status": st}


def _train_config(cfg: QuickstartConfig, store: Path):
    from robostack.config import apply_overrides, from_dict, load_yaml
    from robostack.sim.base import REPO_ROOT
    from robostack.train.config import TrainConfig

    data = load_yaml(REPO_ROOT / cfg.policy_config)  # an absolute path stays as it is
    data = apply_overrides(
        data,
        [f"data.path={store}", f"steps={cfg.train_steps}", "eval.episodes=0", f"seed={cfg.seed}", "log_every=100",
         f"save_every={cfg.train_steps}", f"compile={str(cfg.compile).lower()}",
         f"policy.n_action_steps={cfg.n_action_steps}"],
    )  # fmt: skip
    return from_dict(TrainConfig, data)
