"""QAT training and evaluation, including the short-run eval-mode pitfall."""

import torch
import torch.nn as nn

from flightco.data import Split, load_dataset
from flightco.nn.mobilenet import build_model
from flightco.space import BlockGene, Genome, Precision
from flightco.train import DivergedError, TrainConfig, evaluate, one_cycle, recalibrate_batchnorm, train_qat


def genome(bits=4, res=16, classes=4):
    p = Precision(bits, bits)
    return Genome(1, res, classes, 8, 3, 2, Precision(8, 8), (BlockGene(8, 1, 3, 1, None, p, p),
                                                             BlockGene(16, 3, 3, 2, p, p, p)), Precision(8, 8))


def test_short_qat_run_scores_in_eval_mode_what_it_scores_in_train_mode():
    """30 steps on real digits is far below Brevitas's 300-step statistics phase. Without the
    fix, eval mode scored 14% while the same weights with batch statistics scored 50%."""
    import copy

    ds = load_dataset("mnist5k", limit_train=1600)
    p, p8 = Precision(4, 4), Precision(8, 8)
    g = Genome(1, 28, 10, 16, 3, 2, p8, (BlockGene(16, 1, 3, 1, None, p, p), BlockGene(24, 3, 3, 2, p, p, p),
                                        BlockGene(32, 3, 3, 2, p, p, p)), p8)
    torch.manual_seed(0)
    model = build_model(g)
    result = train_qat(model, ds.train, TrainConfig(epochs=1.2, batch_size=64, lr=5e-3))
    assert result.steps == 30
    quantizers = [m for m in model.modules() if hasattr(m, "collect_stats_steps") and hasattr(m, "counter")]
    assert quantizers and all(m.counter > m.collect_stats_steps for m in quantizers), "scales must be learned, not stale stats"
    batch_stats = copy.deepcopy(model).train()
    with torch.no_grad():
        train_mode_acc = float((batch_stats(ds.test.x).argmax(1) == ds.test.y).float().mean())
    eval_acc = evaluate(model, ds.test)
    assert train_mode_acc > 0.3, "the model must have learned something for the comparison to mean anything"
    assert eval_acc >= train_mode_acc - 0.05


def test_recalibrate_batchnorm_computes_exact_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3))
    x = torch.randn(64, 1, 4, 4) * 3 + 2
    split = Split(x, torch.zeros(64, dtype=torch.long))
    recalibrate_batchnorm(model, split, batches=4, batch_size=16)
    with torch.no_grad():
        feats = model[0](x)
    assert torch.allclose(model[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_divergence_is_reported():
    ds = load_dataset("synthetic", options={"num_samples": 128, "resolution": 16, "num_classes": 4})
    bad = Split(ds.train.x * float("nan"), ds.train.y)
    try:
        train_qat(build_model(genome()), bad, TrainConfig(epochs=1, batch_size=32))
    except DivergedError as exc:
        assert "diverged" in str(exc)
    else:
        raise AssertionError("NaN loss must raise DivergedError")


def test_schedule_warms_up_then_decays_and_handles_tiny_runs():
    f = one_cycle(100)
    assert f(0) < f(24) and f(25) == 1.0 and f(99) < 0.01
    g = one_cycle(1)
    assert 0 < g(0) <= 1
