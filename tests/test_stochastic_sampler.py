"""DPPO's stochastic sampler: eta = 0 reproduces the executed DDIM sample bit for bit; the log-likelihoods it
returns are the ones a later scoring of the stored chain computes; the noise floors and clipping hold."""

from __future__ import annotations

import torch

from robostack.policies import build_policy
from robostack.policies.stochastic_sampler import (
    StochasticSampling,
    gaussian_log_prob,
    sample_chain,
    score_chain,
)

from test_policies import SPEC, STATS, TINY_UNET


def _policy():
    torch.manual_seed(0)
    return build_policy("diffusion", {**TINY_UNET, "num_inference_steps": 5}, SPEC, STATS).eval()


def _cond(policy, b=3):
    obs = {"obs/state": torch.rand(b, 2, 3), "obs/object": torch.rand(b, 2, 2) * 2 - 1}
    return policy.condition(obs)


@torch.no_grad()
def test_eta_zero_is_the_deterministic_sampler():
    policy = _policy()
    cond, noise = _cond(policy), torch.randn(3, 16, 2)
    chain, logp = sample_chain(policy, cond, noise, 5, StochasticSampling(eta=0.0, min_std_sample=0.0))
    assert chain.shape == (3, 6, 16, 2) and logp.shape == (3, 5, 16, 2)
    assert torch.equal(chain[:, 0], noise)
    assert torch.equal(chain[:, -1], policy.sample(cond, noise, 5))


@torch.no_grad()
def test_sampling_log_probs_equal_a_later_scoring_and_floors_hold():
    policy = _policy()
    how = StochasticSampling(eta=1.0, min_std_sample=0.1, min_std_score=0.1, noise_clip=3.0)
    cond = _cond(policy)
    gen = torch.Generator().manual_seed(1)
    chain, logp = sample_chain(policy, cond, torch.randn(3, 16, 2), 5, how, gen)
    torch.testing.assert_close(score_chain(policy, cond, chain, 5, how), logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        score_chain(policy, cond, chain, 5, how, only_last=2), logp[:, 3:], rtol=1e-5, atol=1e-5
    )
    # the last DDIM step has sigma = 0: the floor makes it stochastic, and its log-likelihood is scored at the floor
    assert not torch.equal(
        chain[:, -1],
        sample_chain(policy, cond, chain[:, 0], 5, how, torch.Generator().manual_seed(2))[0][:, -1],
    )
    # clipped noise: no step moves further than noise_clip standard deviations from its mean
    tight = StochasticSampling(eta=1.0, min_std_sample=0.1, min_std_score=0.1, noise_clip=0.5)
    chain, logp = sample_chain(policy, cond, torch.randn(3, 16, 2), 5, tight, gen)
    assert (
        float(logp[:, -1].min())
        >= float(gaussian_log_prob(torch.tensor(0.05), torch.tensor(0.0), 0.1)) - 1e-5
    )


def test_gaussian_log_prob_is_the_normal_density():
    x, mean = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(
        gaussian_log_prob(x, mean, 0.3), torch.distributions.Normal(mean, 0.3).log_prob(x)
    )


def test_a_dppo_update_moves_the_executed_actions_toward_rewarded_chains():
    """The sign end to end: chains whose executed first action dimension is above the median get advantage +1, the
    rest -1; a few clipped updates must raise that dimension in the deterministic (evaluation) sampler's actions."""
    from robostack.algos.dppo import DPPOConfig, DPPOLearner

    policy = _policy().train()
    cfg = DPPOConfig(from_run="unused", ft_denoising_steps=5, actor_lr=1e-3, clip_base=0.05, clip=0.2)
    learner = DPPOLearner(cfg, policy)
    obs = {"obs/state": torch.rand(64, 2, 3), "obs/object": torch.rand(64, 2, 2) * 2 - 1}
    gen = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def executed_first_dim() -> float:
        cond = policy.condition(obs)
        x = policy.sample(cond, torch.zeros(64, *policy.noise_shape))
        return float(x[:, learner.executed, 0].mean())

    before = executed_first_dim()
    for _ in range(6):
        actions, chain, logp = learner.act(obs, gen)
        a0 = torch.as_tensor(actions[:, :, 0]).mean(1)
        adv = (a0 > a0.median()).float() * 2 - 1
        old = learner.old_logp(logp)
        for _ in range(3):
            loss, _ = learner.policy_loss(obs, chain, old, adv)
            learner.actor_opt.zero_grad()
            loss.backward()
            learner.actor_opt.step()
    assert executed_first_dim() > before + 0.1
