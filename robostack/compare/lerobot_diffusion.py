"""LeRobot's ``DiffusionPolicy`` (0.4.x) trained and evaluated on robostack data, for side-by-side benchmarks.

LeRobot expects ``observation.state`` (+ ``observation.environment_state``) already normalised (its processors
normally do that); this adapter applies the same min/max normalisation robostack uses, so both policies see
identical inputs. The U-Net size, horizon, steps and DDIM inference steps are set to match the robostack config.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from robostack.data.normalize import KeyStats
from robostack.data.schema import IMITATE_KEY
from robostack.errors import RobostackError
from robostack.policies.base import PolicySpec
from robostack.policies.normalizer import Normalizer

LEROBOT = "lerobot_diffusion"
"""The name of LeRobot's DiffusionPolicy in suites (``policy:``) and in reports (a row's ``policy``)."""


def _import_lerobot() -> tuple[Any, Any, Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    except Exception as exc:  # lerobot is installed with --no-deps; a missing extra shows up here
        raise RobostackError(f"LeRobot is not usable here ({type(exc).__name__}: {exc})") from None
    return FeatureType, PolicyFeature, DiffusionConfig, DiffusionPolicy


class LeRobotDiffusion:
    """Wraps LeRobot's DiffusionPolicy with robostack's training-batch and inference contracts."""

    def __init__(self, spec: PolicySpec, stats: dict[str, KeyStats], policy_cfg: dict[str, Any]) -> None:
        FeatureType, PolicyFeature, DiffusionConfig, DiffusionPolicy = _import_lerobot()
        if spec.image_keys:
            raise RobostackError("the LeRobot comparison covers low-dim observations only")
        self.spec = spec
        self.state_key = "obs/state" if "obs/state" in spec.obs else spec.lowdim_keys[0]
        self.env_keys = [k for k in spec.lowdim_keys if k != self.state_key]
        self.normalizer = Normalizer(stats, [*spec.lowdim_keys, "action"])
        unet = policy_cfg.get("unet", {})
        dim = lambda k: int(np.prod(spec.obs[k].shape))  # noqa: E731
        inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (dim(self.state_key),))}
        if self.env_keys:
            inputs["observation.environment_state"] = PolicyFeature(
                FeatureType.ENV, (sum(dim(k) for k in self.env_keys),)
            )
        cfg = DiffusionConfig(
            n_obs_steps=policy_cfg.get("n_obs_steps", 2),
            horizon=policy_cfg.get("horizon", 16),
            n_action_steps=policy_cfg.get("n_action_steps", 8),
            down_dims=tuple(unet.get("down_dims", (256, 512, 1024))),
            kernel_size=unet.get("kernel_size", 5),
            n_groups=unet.get("n_groups", 8),
            diffusion_step_embed_dim=unet.get("step_embed_dim", 256),
            use_film_scale_modulation=unet.get("film_scale", True),
            noise_scheduler_type="DDIM",
            num_train_timesteps=policy_cfg.get("num_train_steps", 100),
            num_inference_steps=policy_cfg.get("num_inference_steps", 10),
            # With no step flagged (every store without ``imitate``) the masked loss equals the plain one.
            do_mask_loss_for_padding=True,
            input_features=inputs,
            output_features={"action": PolicyFeature(FeatureType.ACTION, tuple(spec.action.shape))},
            device="cpu",
        )
        self.config = cfg
        self.policy = DiffusionPolicy(cfg)
        self.low = torch.tensor(spec.action_low)
        self.high = torch.tensor(spec.action_high)

    # ------------------------------------------------------------------ training
    def parameters(self):
        return self.policy.parameters()

    def _obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"observation.state": self.normalizer.normalize(self.state_key, obs[self.state_key].float())}
        if self.env_keys:
            out["observation.environment_state"] = torch.cat(
                [self.normalizer.normalize(k, obs[k].float()) for k in self.env_keys], dim=-1
            )
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        n_obs = self.config.n_obs_steps
        lb = self._obs({k: batch[k][:, :n_obs] for k in self.spec.lowdim_keys})
        lb["action"] = self.normalizer.normalize("action", batch["action"].float())
        # LeRobot's own loss mask (meant for padding) leaves out the steps a perturbed store flags not to imitate.
        imitate = batch.get(IMITATE_KEY)
        lb["action_is_pad"] = (
            torch.zeros(lb["action"].shape[:2], dtype=torch.bool) if imitate is None else ~imitate.bool()
        )
        loss, _ = self.policy.forward(lb)
        return loss

    # ------------------------------------------------------------------ inference (robostack contract)
    def train(self, mode: bool = True) -> LeRobotDiffusion:
        self.policy.train(mode)
        return self

    def eval(self) -> LeRobotDiffusion:
        return self.train(False)

    def reset(self) -> None:
        self.policy.reset()

    @property
    def will_plan(self) -> bool:
        queue = self.policy._queues["action"]
        return len(queue) == 0

    @torch.no_grad()
    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = self._obs({k: torch.as_tensor(np.asarray(obs[k]))[None] for k in self.spec.lowdim_keys})
        a = self.policy.select_action(batch)
        a = self.normalizer.unnormalize("action", a)
        return torch.maximum(torch.minimum(a[0], self.high), self.low).numpy().astype(np.float32)
