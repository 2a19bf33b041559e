"""Policies: diffusion (DDPM/DDIM), flow matching and Gaussian MLP, behind one inference contract."""

from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.checkpoint import build_policy, load_policy, save_policy

__all__ = ["Policy", "PolicyConfig", "PolicySpec", "build_policy", "load_policy", "save_policy"]
