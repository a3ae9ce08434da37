import torch
import torch.nn.functional as F

from egnet_core.criteria.losses import EGNetLoss
from egnet_core.model.egnet import EGNetOutput


def _output(seed=0, batch=2, classes=4, size=6):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, size, size, generator=generator, requires_grad=True)
    exposure = torch.rand(batch, 1, size, size, generator=generator)
    return EGNetOutput(logits=logits, exposure=exposure)


def test_total_is_ce_plus_a_hundredth_of_l1_as_in_the_paper():
    output = _output()
    labels = torch.randint(0, 4, (2, 6, 6))
    target = torch.rand(2, 6, 6)
    parts = EGNetLoss()(output, labels, target)
    ce = F.cross_entropy(output.logits, labels)
    l1 = (output.exposure[:, 0] - target).abs().mean()
    torch.testing.assert_close(parts.segmentation, ce)
    torch.testing.assert_close(parts.exposure, l1)
    torch.testing.assert_close(parts.total, ce + 0.01 * l1)
    torch.testing.assert_close(EGNetLoss(alpha=2.0, beta=0.5)(output, labels, target).total, 2 * ce + 0.5 * l1)


def test_ignored_pixels_do_not_contribute():
    output = _output()
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[:, :3] = 255
    loss = EGNetLoss()(output, labels, torch.rand(2, 1, 6, 6))
    torch.testing.assert_close(loss.segmentation, F.cross_entropy(output.logits[:, :, 3:], labels[:, 3:]))
    loss.total.backward()
    assert output.logits.grad[:, :, :3].abs().sum() == 0


def test_an_all_ignore_batch_gives_a_finite_loss_and_finite_gradients():
    output = _output()
    labels = torch.full((2, 6, 6), 255)
    loss = EGNetLoss()(output, labels, torch.rand(2, 1, 6, 6))
    assert loss.segmentation.item() == 0.0
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert torch.isfinite(output.logits.grad).all()


def test_mismatched_shapes_are_named():
    output = _output()
    try:
        EGNetLoss()(output, torch.zeros(2, 5, 6, dtype=torch.long), torch.rand(2, 6, 6))
    except ValueError as error:
        assert "(2, 5, 6)" in str(error)
    else:
        raise AssertionError("a label map of the wrong size was accepted")


def test_without_an_exposure_term_the_loss_is_the_cross_entropy_alone():
    output = _output()
    labels = torch.randint(0, 4, (2, 6, 6))
    ce = F.cross_entropy(output.logits, labels)
    parts = EGNetLoss(alpha=2.0, exposure_term=False)(output, labels, torch.rand(2, 1, 3, 3))  # any target
    torch.testing.assert_close(parts.total, 2 * ce)
    assert parts.exposure == 0.0
