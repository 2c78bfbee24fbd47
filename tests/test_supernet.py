"""The weight-sharing supernet: stage layouts, exact weight inheritance into the ordinary Brevitas
model, and a real tiny supernet search reused by further hardware targets (with fine-tuning, with
early stopping, with the accuracy predictor fitted on the earlier targets' archives, with the
score's stretch measured on front members and reused)."""

from __future__ import annotations

import pytest
import torch

from flightco.nn.supernet import Supernet, extract, stage_depths
from flightco.space import SearchSpace

from conftest import SPACE, random_genomes, tiny_recipe


def test_stage_depths_recover_the_sampled_depths():
    space = SearchSpace.load(SPACE)
    for params, genome in random_genomes(space, 25):
        assert stage_depths(genome, space) == [params[f"s{i + 1}.depth"] for i in range(len(space.stages))]


def test_extracted_float_subnet_computes_what_the_supernet_computes():
    space = SearchSpace.load(SPACE)
    net = Supernet(space, 1, 28, 10)
    torch.manual_seed(0)
    for p in net.parameters():  # non-trivial BN affine terms and classifier bias
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(16, 1, 28, 28)
    for _, genome in random_genomes(space, 4, seed=3):
        g = genome.with_uniform_bits(32)  # no quantizer: the two must agree to float precision
        model = extract(net, g, x)
        model.train()  # BatchNorm on the batch's statistics, as the supernet trains
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, g), rtol=1e-4, atol=1e-4)


def test_extraction_recalibrates_batchnorm_exactly_on_the_calibration_images():
    """One set of calibration passes sets the activation scales AND BatchNorm's statistics: every
    BN's running mean is the exact mean of its input over the calibration images, whatever the
    supernet's own running statistics were, and BN's momentum is left as it was."""
    space = SearchSpace.load(SPACE)
    net = Supernet(space, 1, 28, 10)
    torch.manual_seed(1)
    x = torch.randn(128, 1, 28, 28) * 2 + 1
    _, genome = random_genomes(space, 1, seed=5)[0]
    model = extract(net, genome.with_uniform_bits(32), x, batch_size=64)
    bn, conv = model.stem.bn, model.stem.conv
    with torch.no_grad():
        feats = conv(x)
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training
    quantized = extract(net, genome, x, batch_size=64)  # the scales' collection ends with the passes
    counters = [(m.counter, m.collect_stats_steps) for m in quantized.modules() if hasattr(m, "collect_stats_steps")]
    assert counters and all(c == steps == 2 for c, steps in counters)


def test_gate_split_is_a_seeded_subset_of_validation():
    from flightco.data import Split
    from flightco.supernet_search import GATE_IMAGES, gate_split

    val = Split(torch.arange(1000.0).reshape(-1, 1, 1, 1), torch.arange(1000) % 10)
    a, b, other = gate_split(val, 0), gate_split(val, 0), gate_split(val, 1)
    assert len(a) == GATE_IMAGES and torch.equal(a.x, b.x) and not torch.equal(a.x, other.x)
    assert len(set(a.x.flatten().tolist())) == GATE_IMAGES  # distinct images of the split
    assert torch.equal(a.y, a.x.flatten().long() % 10)  # labels travel with their images
    small = Split(val.x[:100], val.y[:100])
    assert gate_split(small, 0) is small


@pytest.mark.slow
def test_supernet_search_inherits_accuracies_and_is_reused_by_another_target(cli, write_recipe, tmp_path):
    from conftest import ROOT

    from flightco.runs import load_study

    search = {"trials": 3, "population_size": 2, "seed": 0, "strategy": "supernet",
              "supernet": {"epochs": 0.5, "batch_size": 64, "random_subnets": 1, "calibration_images": 64}}
    training = {"proxy": {"epochs": 0.25, "batch_size": 64}, "final": {"epochs": 0.25, "batch_size": 64},
                "finalists": 1, "reference_bits": None}
    first = tiny_recipe(search=search, training=training)
    proc = cli("optimize", write_recipe(first, "a.yaml"), "--out", tmp_path / "runs" / "bitfusion")
    assert proc.returncode == 0, proc.stderr
    assert "training the supernet" in proc.stdout
    _, study = load_study(tmp_path / "runs" / "bitfusion")
    done = [t for t in study.trials if "proxy" in t.user_attrs]
    assert done and all(t.user_attrs["proxy"]["source"] == "inherited" for t in done)
    assert list((tmp_path / "runs" / "bitfusion" / "supernet").glob("*.pt"))
    finals = [v for k, v in study.user_attrs.items() if k.startswith("final:")]
    assert finals and "test_accuracy" in finals[0]["final"]  # finalists are trained stand-alone

    # another target, scoring each subnet after a few fine-tuning steps: an evaluation setting,
    # so the supernet trained for the first target is still the one reused
    tuned = {**search, "trials": 6, "sampler": "random", "supernet": {**search["supernet"], "finetune_steps": 2}}
    second = tiny_recipe(search=tuned, training=training, name="eyeriss_target",
                         hardware=[str(ROOT / "hw_profiles" / "eyeriss.yaml")])
    proc = cli("optimize", write_recipe(second, "b.yaml"), "--out", tmp_path / "runs" / "eyeriss")
    assert proc.returncode == 0, proc.stderr
    assert "reusing the supernet" in proc.stdout and "training the supernet" not in proc.stdout
    _, study = load_study(tmp_path / "runs" / "eyeriss")
    done = [t for t in study.trials if "proxy" in t.user_attrs]
    assert done and all(t.user_attrs["proxy"]["finetune_steps"] == 2 for t in done)

    # a third target with early stopping: each subnet's inherited accuracy, ranked with its known
    # costs against the earlier subnets' (MO-ASHA), decides whether it is worth its fine-tuning
    from optuna.trial import TrialState

    gated = {**tuned, "trials": 8, "sampler": "random",
             "early_stopping": {"eta": 2, "min_peers": 1}}
    third = tiny_recipe(search=gated, training=training, name="gated_target")
    proc = cli("optimize", write_recipe(third, "c.yaml"), "--out", tmp_path / "runs" / "gated")
    assert proc.returncode == 0, proc.stderr
    assert "reusing the supernet" in proc.stdout
    _, study = load_study(tmp_path / "runs" / "gated")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    tuned_done = [t for t in study.trials if t.state == TrialState.COMPLETE and "proxy" in t.user_attrs]
    assert pruned, "with eta 2 and one peer needed, a dominated subnet must be stopped"
    assert all(t.user_attrs["status"].startswith("pruned: stopped on its inherited accuracy, before fine-tuning")
               for t in pruned)
    from flightco.runs import trial_dir

    weights = lambda t: trial_dir(tmp_path / "runs" / "gated", t.number) / "proxy.pt"  # noqa: E731
    assert not any(weights(t).exists() for t in pruned) and all(weights(t).exists() for t in tuned_done)
    assert tuned_done and all(t.user_attrs["proxy"]["inherited_accuracy"] == t.user_attrs["rungs"]["0"]
                              for t in tuned_done)
    from flightco.supernet_search import GATE_IMAGES

    val_images = tuned_done[0].user_attrs["proxy"]["val_images"]
    assert all(t.user_attrs["proxy"]["inherited_val_images"] == min(GATE_IMAGES, val_images) for t in tuned_done)
    assert all("0" in t.user_attrs["rungs"] for t in pruned)
    assert f"early stopping stopped {len(pruned)} of {len(pruned) + len(tuned_done)} scored subnets" in proc.stdout

    # a fourth target with the accuracy predictor: fitted on the subnets the earlier targets scored
    # with the same settings (the archives beside their checkpoints), it searches candidates by
    # prediction and queues its predicted front, whose members are then scored for real
    from flightco.predictor_search import PREDICTED_ATTR, PREDICTOR_ATTR, scored_records
    from flightco.subnet_archive import ScoreSettings

    checkpoint = next((tmp_path / "runs" / "gated" / "supernet").glob("*.pt"))
    known = len(scored_records(checkpoint, ScoreSettings(64, 2, 1e-3)))
    assert known >= 6, "the second target alone scored six random subnets with fine-tuning"
    predicted = {**tuned, "trials": 4,
                 "supernet": {**tuned["supernet"], "predictor": {"min_records": known, "enqueue": 2, "samples": 100}}}
    fourth = tiny_recipe(search=predicted, training=training, name="predicted_target")
    proc = cli("optimize", write_recipe(fourth, "d.yaml"), "--out", tmp_path / "runs" / "predicted")
    assert proc.returncode == 0, proc.stderr
    assert f"accuracy predictor fitted on {known} scored subnets" in " ".join(proc.stdout.split())  # rich wraps
    _, study = load_study(tmp_path / "runs" / "predicted")
    fit, = study.user_attrs[PREDICTOR_ATTR]
    assert fit["records"] == known and fit["candidates"] == 100 and 1 <= fit["queued"] <= 2
    queued = [t for t in study.trials if PREDICTED_ATTR in t.user_attrs]
    assert len(queued) == fit["queued"]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["proxy"]["source"] == "inherited" for t in queued)
    assert len(scored_records(checkpoint, ScoreSettings(64, 2, 1e-3))) > known  # its own scores were archived

    # a fifth target measures the score's stretch: once it has scored a few subnets, three of its
    # front members are trained from scratch with the proxy budget; its finalists are chosen on
    # the score mapped by the measured line, and a sixth target with another profile reuses it
    from flightco import score_scale as ss

    scaled = {**tuned, "trials": 10, "supernet": {**tuned["supernet"], "predictor": None,
                                                  "score_scale": {"members": 3, "after_scored": 4}}}
    proc = cli("optimize", write_recipe(tiny_recipe(search=scaled, training=training, name="scaled"), "e.yaml"),
               "--out", tmp_path / "runs" / "scaled")
    assert proc.returncode == 0, proc.stderr
    assert "score scale measured in this run: 3 front members trained from scratch" in " ".join(proc.stdout.split())
    _, study = load_study(tmp_path / "runs" / "scaled")
    info = study.user_attrs[ss.SCALE_ATTR]
    assert info["points"] == 3 and ss.MIN_SCALE <= info["scale"] <= ss.MAX_SCALE and info["seconds"] > 0
    assert "finalists are chosen on" in " ".join(proc.stdout.split()) and "offset" in info
    stored = ss.read(ss.scale_path(next((tmp_path / "runs" / "scaled" / "supernet").glob("*.pt"))))
    values = {t.number: t.values[0] for t in study.trials if t.values}
    assert all(values[p.trial] == p.score and 0 <= p.proxy <= 1 for p in stored.points)
    assert len({p.trial for p in stored.points}) == 3
    reuse = tiny_recipe(search={**scaled, "trials": 1}, training=training, name="scaled_eyeriss",
                        hardware=[str(ROOT / "hw_profiles" / "eyeriss.yaml")])
    proc = cli("optimize", write_recipe(reuse, "f.yaml"), "--out", tmp_path / "runs" / "scaled_eyeriss")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())  # rich wraps
    assert "score scale reused from" in said and "trained from scratch, " not in said
    _, study = load_study(tmp_path / "runs" / "scaled_eyeriss")
    assert study.user_attrs[ss.SCALE_ATTR]["scale"] == info["scale"]


def test_bit_warmup_starts_children_at_the_top_bit_widths():
    from flightco.nn.supernet import allowed_bits

    assert allowed_bits([2, 3, 4, 5, 6, 8], 0.0) == [8]
    assert allowed_bits([2, 3, 4, 5, 6, 8], 0.5) == [8, 6, 5]
    assert allowed_bits([4, 6, 8, 32], 1.0) == [32, 8, 6, 4]
    net = Supernet(SearchSpace.load(SPACE), 1, 28, 10)
    early = net.extreme_genome(False, bits_share=0.0)  # smallest architecture, but at the top bits
    late = net.extreme_genome(False)
    assert [b.out_channels for b in early.blocks] == [b.out_channels for b in late.blocks]
    top = max(SearchSpace.load(SPACE).precision.w_bits)
    assert all(p.w_bits == top and p.a_bits == top for b in early.blocks for p in (b.dw, b.project))
    assert min(p.w_bits for b in late.blocks for p in (b.dw, b.project)) == min(SearchSpace.load(SPACE).precision.w_bits)
    g = torch.Generator().manual_seed(0)
    assert all(p.w_bits == top for _ in range(5) for b in net.random_genome(g, 0.0).blocks for p in (b.dw, b.project))


def _trained_genomes(net: Supernet, x: torch.Tensor, y: torch.Tensor, cfg) -> list:
    """Every genome the supernet's forward pass saw while ``train_supernet`` ran (per step: the
    largest, the smallest, then the random children)."""
    from flightco.nn.supernet import train_supernet

    seen = []
    forward = net.forward

    def recording(inputs, genome):
        seen.append(genome)
        return forward(inputs, genome)

    net.forward = recording
    train_supernet(net, x, y, cfg)
    net.forward = forward
    return seen


@pytest.mark.parametrize("children_bits", ["top", "random"])
def test_children_bits_decide_what_the_sandwich_rule_trains(children_bits):
    from flightco.nn.supernet import SupernetConfig, train_supernet

    space = SearchSpace.load(SPACE)
    net = Supernet(space, 1, 28, 10)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    seen = _trained_genomes(net, x, y, SupernetConfig(epochs=2, batch_size=32, children_bits=children_bits, seed=0))
    lowest = min(p.w_bits for g in seen[1:] for b in g.blocks for p in (b.dw, b.project))
    top, bottom = max(space.precision.w_bits), min(space.precision.w_bits)
    assert lowest == (top if children_bits == "top" else bottom)
    with pytest.raises(ValueError, match="children_bits must be top or random"):
        train_supernet(net, x, y, SupernetConfig(epochs=1, children_bits="half"))


def _relative_log_macs(net: Supernet, genomes: list) -> torch.Tensor:
    import math

    from flightco.hw.workload import workload

    def log_macs(genome) -> float:
        return math.log(sum(layer.macs for layer in workload(genome)))

    low, high = log_macs(net.extreme_genome(False)), log_macs(net.extreme_genome(True))
    return (torch.tensor([log_macs(g) for g in genomes]) - low) / (high - low)


def test_spread_children_cover_the_cheap_end_that_uniform_choices_rarely_reach():
    """In the default space uniform choices put few children in the smallest quarter of the
    log-MACs range; drawing a size level first puts about a quarter there, and the level orders
    the sizes."""
    net = Supernet(SearchSpace.load(SPACE), 1, 28, 10)
    g = torch.Generator().manual_seed(0)
    uniform = _relative_log_macs(net, [net.random_genome(g, 0.0) for _ in range(300)])
    spread = _relative_log_macs(net, [net.random_genome(g, 0.0, float(torch.rand((), generator=g))) for _ in range(300)])
    assert float((uniform < 0.25).float().mean()) < 0.08
    assert 0.15 < float((spread < 0.25).float().mean()) < 0.4
    assert 0.15 < float((spread > 0.75).float().mean()) < 0.4
    small = _relative_log_macs(net, [net.random_genome(g, 0.0, 0.1) for _ in range(40)])
    large = _relative_log_macs(net, [net.random_genome(g, 0.0, 0.9) for _ in range(40)])
    assert float(small.mean()) + 0.4 < float(large.mean())
    top = max(SearchSpace.load(SPACE).precision.w_bits)
    assert all(p.w_bits == top for _ in range(5) for b in net.random_genome(g, 0.0, 0.5).blocks for p in (b.dw, b.project))


def test_children_sizes_spread_trains_children_of_every_size_and_keeps_old_checkpoint_keys():
    from flightco.nn.supernet import SupernetConfig, supernet_key, train_supernet

    net = Supernet(SearchSpace.load(SPACE), 1, 28, 10)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    seen = _trained_genomes(net, x, y, SupernetConfig(epochs=2, batch_size=32, children_sizes="spread", seed=0))
    children = [g for i, g in enumerate(seen) if i % 4 >= 2]  # largest, smallest, then 2 random per step
    assert len(children) == 32 and float((_relative_log_macs(net, children) < 0.3).float().mean()) > 0.1
    with pytest.raises(ValueError, match="children_sizes must be choices or spread"):
        train_supernet(net, x, y, SupernetConfig(epochs=1, children_sizes="big"))
    # The key of a default configuration is the one computed before children_sizes existed, so
    # supernets already trained are still found; a spread supernet is another checkpoint.
    dataset = {"name": "mnist5k"}
    assert supernet_key("space", dataset, SupernetConfig()) == "f80bfbcff97bc399"
    assert supernet_key("space", dataset, SupernetConfig(children_sizes="spread")) != "f80bfbcff97bc399"
