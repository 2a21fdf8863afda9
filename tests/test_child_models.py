"""The child networks: shapes, parameter counts against published figures, errors, greedy decoding."""

from __future__ import annotations

import pytest
import torch

from child_tasks.models import BOS, EOS, PAD, ConvNet, TranslationTransformer, WideResNet, count_parameters
from dsl.optimizer import RuleOptimizer


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 16, 24)])
@pytest.mark.parametrize("width", [32, 8])
def test_convnet_adapts_to_input_and_counts_its_parameters(shape, width):
    model = ConvNet(shape, num_classes=10, width=width)
    c, h, w = shape
    # conv1 (no bias) + BN + conv2 (no bias) + BN + linear head over width*H*W features.
    expected = c * 9 * width + 2 * width + width * width * 9 + 2 * width + (width * h * w + 1) * 10
    assert count_parameters(model) == expected
    assert model(torch.randn(5, *shape)).shape == (5, 10)


def test_convnet_nos_sizes():
    assert count_parameters(ConvNet((1, 8, 8), 10)) == 30_122
    assert count_parameters(ConvNet((3, 32, 32), 10)) == 337_898


@pytest.mark.parametrize("depth, widen, expected", [
    (16, 4, 2_748_890),   # WRN-16-4: 2.7M in Zagoruyko & Komodakis (2016), table 4
    (28, 10, 36_479_194),  # WRN-28-10: 36.5M, same table
])
def test_wide_resnet_parameter_counts_match_the_paper(depth, widen, expected):
    assert count_parameters(WideResNet(depth, widen)) == expected


@pytest.mark.parametrize("depth", [8, 15, 17, 0])
def test_wide_resnet_rejects_a_depth_that_is_not_6n_plus_4(depth):
    with pytest.raises(ValueError, match=f"6n\\+4.*got {depth}"):
        WideResNet(depth, 2)


def test_wide_resnet_trains_one_step_with_a_rule():
    torch.manual_seed(0)
    model = WideResNet(10, 1, num_classes=10, dropout=0.3)
    opt = RuleOptimizer(model.parameters(), "exp(sign(g) * sign(m)) * g", lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.grad is not None)


def test_transformer_shapes_and_width_check():
    model = TranslationTransformer(30, 40, d_model=16, heads=2, layers=1, max_len=20)
    src, tgt = torch.randint(4, 30, (3, 7)), torch.randint(4, 40, (3, 5))
    assert model(src, tgt).shape == (3, 5, 40)
    with pytest.raises(ValueError, match="divisible"):
        TranslationTransformer(30, 40, d_model=18, heads=4)


def test_greedy_decode_stops_at_eos_and_pads_after_it():
    model = TranslationTransformer(10, 10, d_model=8, heads=2, layers=1, max_len=20).eval()
    # Scripted next tokens per step: row 0 ends at once, row 1 after two words; later steps never run.
    script = [[EOS, 5], [7, 6], [7, EOS], [7, 7]]
    calls = []

    def scripted(tgt_in, memory, pad):
        step = tgt_in.shape[1] - 1
        calls.append(step)
        logits = torch.zeros(2, tgt_in.shape[1], 10)
        for row, token in enumerate(script[step]):
            logits[row, -1, token] = 1.0
        return logits

    model.decode = scripted
    out = model.greedy_decode(torch.randint(4, 10, (2, 5)), max_len=10)
    assert out.tolist() == [[EOS, PAD, PAD], [5, 6, EOS]]
    assert calls == [0, 1, 2]  # stopped as soon as every row had its EOS


def test_greedy_decode_of_a_model_that_always_says_eos_is_one_token():
    model = TranslationTransformer(10, 10, d_model=8, heads=2, layers=1, max_len=20).eval()
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
        model.out.bias[EOS] = 10.0
    out = model.greedy_decode(torch.randint(4, 10, (3, 6)))
    assert out.tolist() == [[EOS]] * 3
    assert BOS not in out
