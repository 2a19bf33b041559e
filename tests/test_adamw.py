"""SharedStepAdamW: torch's fused AdamW update, bit for bit, with one step counter for all parameters."""

from __future__ import annotations

import torch

from robostack.train.adamw import SharedStepAdamW


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4, 5), (8,), (3, 8), (3,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    # one stored channels-last-like (non-contiguous strides), as compiled CPU training stores conv weights
    params[0].data = params[0].data.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    return params


def set_grads(
    params: list[torch.Tensor], step: int, skip: int | None = None, layout_of_param: bool = True
) -> None:
    """Gradients in their parameter's layout (what AccumulateGrad hands over), or contiguous."""
    g = torch.Generator().manual_seed(1000 + step)
    for i, p in enumerate(params):
        grad = torch.randn(p.shape, generator=g)
        if layout_of_param:
            grad = torch.empty_like(p).copy_(grad)
        p.grad = None if i == skip else grad


def run(opt_cls, params, steps: range, skip_at: int | None = None, opt=None, layout_of_param=True, **kw):
    opt = opt or opt_cls(params, lr=1e-2, betas=(0.9, 0.95), weight_decay=1e-3, **kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    for s in steps:
        set_grads(params, s, skip=1 if s == skip_at else None, layout_of_param=layout_of_param)
        opt.step()
        sched.step()
    return opt


def test_same_update_as_torch_fused_adamw_bit_for_bit():
    ours, theirs = make_params(), make_params()
    opt = run(SharedStepAdamW, ours, range(12))
    run(torch.optim.AdamW, theirs, range(12), fused=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    steps = {id(s["step"]) for s in opt.state.values()}
    assert len(steps) == 1 and float(opt.state[ours[0]]["step"]) == 12.0


def test_checkpoints_load_both_ways_and_counters_are_saved_per_parameter():
    ours, theirs = make_params(), make_params()
    opt = run(SharedStepAdamW, ours, range(5))
    state = opt.state_dict()
    assert len({id(s["step"]) for s in state["state"].values()}) == len(ours)
    torch_opt = torch.optim.AdamW(theirs, lr=1e-2, betas=(0.9, 0.95), weight_decay=1e-3, fused=True)
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            b.copy_(a)
    torch_opt.load_state_dict(state)
    # ours -> torch -> ours continues exactly as torch's optimiser alone (a counter shared across the loaded
    # state would be incremented once per parameter by torch's step)
    run(None, theirs, range(5, 7), opt=torch_opt)
    back = SharedStepAdamW(ours, lr=1e-2, betas=(0.9, 0.95), weight_decay=1e-3)
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    back.load_state_dict(torch_opt.state_dict())
    run(None, ours, range(7, 10), opt=back)
    # each run() builds a new LambdaLR, restarting the schedule: the reference restarts it at the same steps
    replay = make_params()
    o = run(torch.optim.AdamW, replay, range(5), fused=True)
    run(None, replay, range(5, 7), opt=o)
    run(None, replay, range(7, 10), opt=o)
    assert all(torch.equal(a, b) for a, b in zip(ours, replay, strict=True))
    assert len({id(s["step"]) for s in back.state.values()}) == 1


def test_state_dict_leaves_the_live_counter_shared():
    """Saving a checkpoint must not detach the live state from the shared counter: before the fix, every later
    checkpoint of a run saved the step of its first one, and a resumed run used the wrong bias correction."""
    params = make_params()
    opt = run(SharedStepAdamW, params, range(3))
    assert float(opt.state_dict()["state"][0]["step"]) == 3.0
    run(None, params, range(3, 7), opt=opt)
    assert {float(s["step"]) for s in opt.state_dict()["state"].values()} == {7.0}
    assert len({id(s["step"]) for s in opt.state.values()}) == 1


def test_a_parameter_without_gradient_falls_back_to_torch_counters():
    ours, theirs = make_params(), make_params()
    opt = run(SharedStepAdamW, ours, range(8), skip_at=3)
    run(torch.optim.AdamW, theirs, range(8), skip_at=3, fused=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert float(opt.state[ours[1]]["step"]) == 7.0 and float(opt.state[ours[0]]["step"]) == 8.0


def contiguous_copies(params: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().contiguous()) for p in params]


def test_permuted_layouts_reach_the_kernel_as_flat_views_and_mismatched_ones_are_aligned():
    """The channels-last weight's update equals the one computed on a contiguous copy of everything, also when its
    gradient arrives contiguous or its loaded state was saved from contiguous parameters (torch's own kernel pairs
    such tensors by memory position)."""
    reference = contiguous_copies(make_params())
    run(torch.optim.AdamW, reference, range(6), fused=True)
    for layout_of_param in (True, False):
        ours = make_params()
        assert not ours[0].is_contiguous()
        run(SharedStepAdamW, ours, range(6), layout_of_param=layout_of_param)
        assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))
    # state saved by a run on contiguous parameters, resumed on channels-last ones
    plain = contiguous_copies(make_params())
    saved = run(SharedStepAdamW, plain, range(3)).state_dict()
    ours = make_params()
    with torch.no_grad():
        for a, b in zip(ours, plain, strict=True):
            a.copy_(b)
    opt = SharedStepAdamW(ours, lr=1e-2, betas=(0.9, 0.95), weight_decay=1e-3)
    opt.load_state_dict(saved)
    run(None, ours, range(3, 6), opt=opt)
    replay = contiguous_copies(make_params())
    o = run(torch.optim.AdamW, replay, range(3), fused=True)
    run(None, replay, range(3, 6), opt=o)
    assert all(torch.equal(a, b) for a, b in zip(ours, replay, strict=True))
    assert opt.state[ours[0]]["exp_avg"].stride() == ours[0].stride()
