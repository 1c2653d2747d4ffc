import math

import pytest
import torch

from pipeline.models.losses import gan_loss, gradient_penalty, l1
from pipeline.models.pool import ImagePool
from pipeline.training import lr_factor


def test_lsgan_is_mean_squared_distance_to_the_target():
    p = torch.tensor([0.5, 1.5, -1.0])
    assert gan_loss(p, True, "lsgan").item() == pytest.approx(((0.5 - 1) ** 2 + 0.5 ** 2 + 4) / 3)
    assert gan_loss(p, False, "lsgan").item() == pytest.approx((0.25 + 2.25 + 1) / 3)


def test_vanilla_is_binary_cross_entropy_on_logits():
    p = torch.zeros(4)
    assert gan_loss(p, True, "vanilla").item() == pytest.approx(math.log(2))
    assert gan_loss(torch.full((2,), 100.0), True, "vanilla").item() == pytest.approx(0, abs=1e-6)
    assert gan_loss(torch.tensor([2.0]), False, "vanilla").item() == pytest.approx(math.log(1 + math.e ** 2))


def test_wgan_is_the_signed_mean():
    p = torch.tensor([1.0, 3.0])
    assert gan_loss(p, True, "wgangp").item() == -2.0 and gan_loss(p, False, "wgangp").item() == 2.0


def test_unknown_gan_mode():
    with pytest.raises(ValueError, match="valid: lsgan, vanilla, wgangp"):
        gan_loss(torch.zeros(1), True, "hinge")


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # ||grad|| = 5 everywhere

    def critic(x):
        return (x * w).sum(dim=(1, 2, 3))
    real, fake = torch.randn(3, 2, 1, 1), torch.randn(3, 2, 1, 1)
    assert gradient_penalty(critic, real, fake, 10.0).item() == pytest.approx(10 * (5 - 1) ** 2)


def test_l1():
    assert l1(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0])).item() == 1.5


# --- image pool -------------------------------------------------------------------------------


def _imgs(start, n):
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1)


def test_pool_of_size_zero_is_a_pass_through():
    x = _imgs(0, 3)
    assert ImagePool(0, seed=0).query(x) is x


def test_pool_returns_new_images_until_full_then_mixes_in_history():
    pool = ImagePool(5, seed=0)
    assert torch.equal(pool.query(_imgs(0, 5)), _imgs(0, 5))  # filling: returned as they are
    seen_history = seen_new = 0
    for step in range(200):
        new = _imgs(100 + step, 1)
        out = pool.query(new)
        if torch.equal(out, new):
            seen_new += 1
        else:
            seen_history += 1
            assert out.item() < 100 + step  # an older image from the pool
        assert len(pool.images) == 5
    assert 70 < seen_history < 130  # a fair coin per image (p = 1/2)


def test_pool_state_round_trip_replays_the_same_choices():
    a = ImagePool(3, seed=7)
    a.query(_imgs(0, 4))
    b = ImagePool(3, seed=999)
    b.load_state_dict(a.state_dict())
    for i in range(20):
        assert torch.equal(a.query(_imgs(10 + i, 2)), b.query(_imgs(10 + i, 2)))


# --- learning-rate policy -------------------------------------------------------------------


def test_lr_is_constant_then_decays_linearly():
    f = [lr_factor(e, 3, 4) for e in range(7)]
    assert f[:3] == [1.0, 1.0, 1.0]
    assert f[3:] == pytest.approx([0.8, 0.6, 0.4, 0.2])  # steps of 1/(n_epochs_decay + 1)


def test_lr_policy_authors_current_matches_their_scheduler_epoch_by_epoch():
    """The authors' current code (models/networks.py get_scheduler, train.py): lambda_rule(epoch) =
    1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count = 1, and
    model.update_learning_rate() -> scheduler.step() at the START of each epoch, before its first step."""
    n, d, epoch_count = 4, 4, 1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - max(0, e + epoch_count - n) / float(d + 1))
    seen = []
    for _epoch in range(epoch_count, n + d + 1):  # their loop
        opt.step()  # an optimiser step before the scheduler's, as their first iteration's is (no warning)
        sched.step()  # update_learning_rate, "in the beginning of every epoch"
        seen.append(opt.param_groups[0]["lr"])
    ours = [2e-4 * lr_factor(k, n, d, "authors_current") for k in range(n + d)]
    assert seen == pytest.approx(ours)
    assert ours[-1] == 0.0 and ours[n - 1] < 2e-4  # the decay's first epoch is the last "constant" one
    assert [lr_factor(k, n, d, "paper") for k in range(n + d)] == pytest.approx([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])


def test_lr_matches_the_authors_lambda_lr_schedule():
    """Authors until 2020: LambdaLR(1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)), stepped after each epoch."""
    n, d = 5, 5
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - max(0, e + 1 - n) / float(d + 1))
    for epoch in range(n + d):
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * lr_factor(epoch, n, d))
        opt.step()
        sched.step()
