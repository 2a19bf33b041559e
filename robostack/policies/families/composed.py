"""General Policy Composition (GPC, Cao et al. 2025): several trained diffusion/flow policies score the same noisy
action chunk at every denoising step, and a convex combination of their scores drives one shared sampler step.

The composite is an ordinary policy family: its folder holds every parent's config, spec, weights (under
``parents.<i>.``) and normalisation statistics (under ``parent<i>/``), so eval, export, the runtimes and the ROS
node load it like any policy. The conversions between parameterisations are in ``robostack.policies.score_mix``.

What composes, and what is refused (one line saying why):

- families: diffusion (eps prediction, DDPM schedule) and flow (velocity); anything without a score is refused.
- sampler: with any diffusion parent the composite runs DDIM on the diffusion parents' schedule (they must share
  ``num_train_steps``); flow parents are queried exactly at those times. All-flow composites integrate the flow ODE
  (the first parent's integrator). At weights (1, 0, ...) the composite reproduces its first parent bit for bit
  when that parent's family sets the sampler; a flow parent under a DDIM sampler is integrated on the DDIM grid.
- actions: same shape, bounds, control rate and normalisation statistics (a shared noisy sample must mean the same
  raw actions to every parent; an affine change of action coordinates also rescales the noise, so it cannot be
  reconciled exactly). Parents trained on different data agree when trained with ``data.action_stats: bounds``.
- observations: the union of the parents' keys (a key two parents share must have the same shape and dtype); each
  parent conditions on its own keys with its own statistics. Equal ``n_obs_steps`` (chunks align in time).
- chunk length: parents may differ; the common prefix is mixed and the longer parents keep their tail.

Exported, same-shaped U-Net parents (same architecture, chunk length and conditioning width, e.g. the diffusion +
flow pair on the same data) run as one stacked network per denoising step (``policies.stacked_unet``): at batch 1
the graph's node count, not its arithmetic, sets the latency, and stacking shares every node between the parents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.families.flow import TIME_SCALE as FLOW_TIME_SCALE
from robostack.policies.registry import register_policy
from robostack.policies.schedulers import DDPMSchedule, ddim_coefficients, ddim_step, flow_times
from robostack.policies.score_mix import mix, segment_weights, velocity_to_eps, vp_point_to_flow
from robostack.policies.stacked_unet import can_stack, stacked_unet

COMPOSABLE = ("diffusion", "flow")
WEIGHT_TOL = 1e-6


def parent_prefix(i: int) -> str:
    """Key prefix of parent ``i``'s statistics inside the composite's ``normalization.json``."""
    return f"parent{i}/"


@dataclass
class ComposedConfig(PolicyConfig):
    type: str = "composed"
    parents: list[dict[str, Any]] = field(default_factory=list)
    """Each parent as ``{type, config, spec, source, stats_hash}`` (its ``policy.json`` fields and where it came
    from); the weights live in this folder's ``model.safetensors`` under ``parents.<i>.``."""
    weights: list[float] = field(default_factory=list)
    """Convex weights, one per parent (>= 0, summing to 1)."""
    num_steps: int = 0
    """Steps of the shared sampler; 0 = the sampler-setting parent's configured number."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weights(self.weights, len(self.parents))
        if self.num_steps < 0:
            raise RobostackError(f"num_steps must be >= 0, got {self.num_steps}")


def check_weights(weights: list[float], n_parents: int) -> None:
    if n_parents < 2:
        raise RobostackError(f"a composite needs at least two parents, got {n_parents}")
    if len(weights) != n_parents:
        raise RobostackError(f"{len(weights)} weight(s) for {n_parents} parents")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise RobostackError(f"weights must be finite and >= 0, got {weights}")
    if abs(sum(weights) - 1.0) > WEIGHT_TOL:
        raise RobostackError(
            f"weights must sum to 1 (a convex combination), got {weights} (sum {sum(weights):g})"
        )


class _StatsView:
    """The composite's answer to ``policy.normalizer.stat(key, what)``: each key from the first parent that has it
    (the action statistics are identical across parents by construction)."""

    def __init__(self, parents: list[Policy]) -> None:
        self.parents = parents

    def stat(self, key: str, what: str) -> torch.Tensor:
        for p in self.parents:
            if key == "action" or key in p.spec.obs:
                return p.normalizer.stat(key, what)
        raise RobostackError(f"no normalisation statistics for key '{key}'")

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        return self.parents[0].normalizer.unnormalize(key, y)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        for p in self.parents:
            if key == "action" or key in p.spec.obs:
                return p.normalizer.normalize(key, x)
        raise RobostackError(f"no normalisation statistics for key '{key}'")


def _feature_text(f: Any) -> str:
    return f"{f.dtype}{list(f.shape)}"


def check_composable(parents: list[Policy], names: list[str] | None = None) -> None:
    """RobostackError naming the first reason ``parents`` cannot share one sampler."""
    names = names or [f"parent {i}" for i in range(len(parents))]
    for name, p in zip(names, parents, strict=True):
        if p.family not in COMPOSABLE:
            raise RobostackError(
                f"{name} is a {p.family or type(p).__name__} policy: GPC composes the scores of "
                f"{' and '.join(COMPOSABLE)} policies"
            )
    a, an = parents[0], names[0]
    for p, n in zip(parents[1:], names[1:], strict=True):
        if tuple(p.spec.action.shape) != tuple(a.spec.action.shape):
            raise RobostackError(
                f"{an} and {n} act in different spaces (action shape {list(a.spec.action.shape)} vs "
                f"{list(p.spec.action.shape)})"
            )
        if not np.allclose(p.spec.action_low, a.spec.action_low) or not np.allclose(
            p.spec.action_high, a.spec.action_high
        ):
            raise RobostackError(f"{an} and {n} have different action bounds")
        if abs(p.spec.control_rate_hz - a.spec.control_rate_hz) > 1e-9:
            raise RobostackError(
                f"{an} and {n} run at different control rates ({a.spec.control_rate_hz:g} Hz vs "
                f"{p.spec.control_rate_hz:g} Hz)"
            )
        for what in ("min", "max"):
            x, y = a.normalizer.stat("action", what), p.normalizer.stat("action", what)
            if not torch.allclose(x, y, rtol=0.0, atol=1e-6):
                raise RobostackError(
                    f"{an} and {n} normalise actions differently (action {what} {x.tolist()} vs {y.tolist()}): a "
                    f"shared noisy sample would mean different actions to each; train both with "
                    f"data.action_stats=bounds or on the same data"
                )
        if p.config.n_obs_steps != a.config.n_obs_steps:
            raise RobostackError(
                f"{an} and {n} condition on different observation histories (n_obs_steps "
                f"{a.config.n_obs_steps} vs {p.config.n_obs_steps}): their chunks would not align in time"
            )
    seen: dict[str, tuple[str, Any]] = {}
    for p, n in zip(parents, names, strict=True):
        for k, f in p.spec.obs.items():
            if k in seen and (tuple(seen[k][1].shape) != tuple(f.shape) or seen[k][1].dtype != f.dtype):
                raise RobostackError(
                    f"{seen[k][0]} and {n} read observation '{k}' differently "
                    f"({_feature_text(seen[k][1])} vs {_feature_text(f)})"
                )
            seen.setdefault(k, (n, f))
    diffusion = [(p, n) for p, n in zip(parents, names, strict=True) if p.family == "diffusion"]
    for p, n in diffusion[1:]:
        if p.config.num_train_steps != diffusion[0][0].config.num_train_steps:
            raise RobostackError(
                f"{diffusion[0][1]} and {n} were trained on different DDPM schedules "
                f"({diffusion[0][0].config.num_train_steps} vs {p.config.num_train_steps} steps)"
            )


def composed_spec(parents: list[Policy]) -> PolicySpec:
    """The union of the parents' observations; the (shared) action space of the first."""
    obs: dict[str, Any] = {}
    for p in parents:
        for k, f in p.spec.obs.items():
            obs.setdefault(k, f)
    a = parents[0].spec
    return PolicySpec(obs, a.action, list(a.action_low), list(a.action_high), a.control_rate_hz)


@register_policy("composed", ComposedConfig)
class ComposedPolicy(Policy):
    config: ComposedConfig
    trainable = False

    def __init__(self, config: ComposedConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        from robostack.policies.checkpoint import build_policy  # the registry imports this module

        super().__init__(config, spec)
        parents = []
        for i, p in enumerate(config.parents):
            pre = parent_prefix(i)
            own = {k[len(pre) :]: v for k, v in stats.items() if k.startswith(pre)}
            parents.append(build_policy(p["type"], p["config"], PolicySpec.from_json(p["spec"]), own))
        check_composable(parents)
        self.parents = nn.ModuleList(parents)
        self._stats = _StatsView(parents)
        self.segments = segment_weights([p.config.horizon for p in parents], list(config.weights))
        diffusion = [p for p in parents if p.family == "diffusion"]
        # an index, not a module attribute: a second reference would duplicate the lead's weights in state_dict
        self._lead = next((i for i, p in enumerate(parents) if p.family == "diffusion"), 0)
        if self.config.horizon != max(p.config.horizon for p in parents):
            raise RobostackError("a composite's horizon is its longest parent's")
        if diffusion:
            self.schedule = DDPMSchedule(self.lead.config.num_train_steps)
        self._ddim: dict[int, list[tuple[int, float, float]]] = {}
        self.stackable = len({p.config.horizon for p in parents}) == 1 and can_stack(
            [p.unet for p in parents]
        )

    @property
    def lead(self) -> Any:
        """The parent whose family sets the sampler (the first diffusion parent, else the first parent)."""
        return self.parents[self._lead]

    @property
    def normalizer(self) -> Any:
        return self._stats

    @property
    def sampler(self) -> str:
        """``ddim`` (some parent is a diffusion policy) or the flow integrator (``euler`` / ``midpoint``)."""
        return "ddim" if self.lead.family == "diffusion" else self.lead.config.integrator

    # ------------------------------------------------------------------ steps
    @property
    def num_steps(self) -> int:
        return self.config.num_steps or self.lead.num_steps

    @property
    def max_num_steps(self) -> int | None:
        return self.lead.config.num_train_steps if self.sampler == "ddim" else None

    def check_num_steps(self, n: int) -> int:
        most = self.max_num_steps
        if n < 1 or (most is not None and n > most):
            bound = f"[1, {most}]" if most is not None else ">= 1"
            raise RobostackError(
                f"the number of denoising steps must be in {bound} for this composite, got {n}"
            )
        return int(n)

    def set_num_steps(self, n: int) -> None:
        self.config.num_steps = self.check_num_steps(n)

    @property
    def weights(self) -> list[float]:
        return list(self.config.weights)

    def set_weights(self, weights: list[float]) -> None:
        """Compose with other weights from now on (an inference-time choice: the weight search's knob)."""
        weights = [float(w) for w in weights]
        check_weights(weights, len(self.parents))
        self.config.weights = weights
        self.segments = segment_weights([p.config.horizon for p in self.parents], weights)

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise RobostackError(
            "a composite is built from trained policies (robostack compose); it is not trained"
        )

    # ------------------------------------------------------------------ inference
    def conditions(self, obs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [p.condition({k: obs[k] for k in p.spec.obs}) for p in self.parents]

    def _eps(self, x: torch.Tensor, k: int, ab_t: float, conds: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every parent's noise prediction at DDIM step ``k`` (flow parents converted exactly)."""
        a, s = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
        inputs, times, flow_t = [], [], []
        for p in self.parents:
            xi = x[:, : p.config.horizon]
            if p.family == "diffusion":
                inputs.append(xi)
                times.append(float(k))
                flow_t.append(None)
            else:
                y, t = vp_point_to_flow(xi, a, s)
                inputs.append(y)
                times.append(t * FLOW_TIME_SCALE)
                flow_t.append(t)
        preds = self._networks(inputs, times, conds)
        return [
            pred if t is None else velocity_to_eps(y, pred, t)
            for y, pred, t in zip(inputs, preds, flow_t, strict=True)
        ]

    def _networks(self, inputs: list[torch.Tensor], times: list[float], conds: list[torch.Tensor]) -> list:
        """Every parent's network on its own (sample, time, conditioning): one stacked call when exporting
        same-shaped U-Nets, else one call each (eager, where restacking the weights every step would cost more)."""
        b = inputs[0].shape[0]
        if self.stackable and torch.onnx.is_in_onnx_export():
            t = torch.stack([torch.full((b,), tv, device=inputs[0].device) for tv in times])
            out = stacked_unet([p.unet for p in self.parents], torch.stack(inputs), t, torch.stack(conds))
            return list(out.unbind(0))
        return [
            p.unet(xi, torch.full((b,), tv, device=xi.device), c)
            for p, xi, tv, c in zip(self.parents, inputs, times, conds, strict=True)
        ]

    def _velocity(self, x: torch.Tensor, t: float, conds: list[torch.Tensor]) -> torch.Tensor:
        preds = [p.velocity(x[:, : p.config.horizon], t, c) for p, c in zip(self.parents, conds, strict=True)]
        return mix(preds, self.segments)

    def sample(
        self, conds: list[torch.Tensor], noise: torch.Tensor, num_steps: int | None = None
    ) -> torch.Tensor:
        """The shared chain from ``noise`` (B, T_p, Da) to a normalised action sequence."""
        steps = num_steps or self.num_steps
        x = noise
        if self.sampler == "ddim":
            if steps not in self._ddim:
                self._ddim[steps] = ddim_coefficients(self.schedule, steps)
            for k, ab_t, ab_prev in self._ddim[steps]:
                eps = mix(self._eps(x, k, ab_t, conds), self.segments)
                x = ddim_step(x, eps, ab_t, ab_prev, self.lead.config.clip_sample)
            return x
        for t, dt in flow_times(steps):
            if self.sampler == "euler":
                x = x - dt * self._velocity(x, t, conds)
            else:
                x_mid = x - 0.5 * dt * self._velocity(x, t, conds)
                x = x - dt * self._velocity(x_mid, t - 0.5 * dt, conds)
        return x.clamp(-1.0, 1.0)

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        conds = self.conditions(obs)
        if noise is None:
            shape = (conds[0].shape[0], *self.noise_shape)
            noise = torch.randn(shape, generator=generator, device=conds[0].device)
        actions = self._stats.unnormalize("action", self.sample(conds, noise, num_steps))
        start = self.config.n_obs_steps - 1
        return self.clip_actions(actions[:, start : start + self.config.n_action_steps])
