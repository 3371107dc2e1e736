"""Each strategy trains a few steps on tiny BERT/DistilBERT/RoBERTa; what must stay frozen stays
bit-identical, what must train changes, and gradual unfreezing follows its schedule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import quiet_trainer, tiny_overrides
from hydra.utils import instantiate

from ftcompare.builders import build_module
from ftcompare.models import anatomy

ARCHS = ["bert", "distilbert", "roberta"]


def fit(cfg, module, epochs: int = 2, callbacks=()) -> dict[str, torch.Tensor]:
    """Snapshot the weights, train a few steps, return the snapshot."""
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    datamodule = instantiate(cfg.data, _convert_="all")
    trainer = quiet_trainer(max_epochs=epochs, limit_train_batches=3, limit_val_batches=1, callbacks=list(callbacks))
    trainer.fit(module, datamodule=datamodule)
    return before


def changed(module, before) -> dict[str, bool]:
    return {n: not torch.equal(p.detach(), before[n]) for n, p in module.named_parameters()}


@pytest.fixture
def setup(compose_cfg, tiny_models, reviews_csv):
    def _setup(arch: str, strategy: str, *extra: str):
        cfg = compose_cfg(f"strategy={strategy}", *tiny_overrides(tiny_models[arch], reviews_csv), *extra)
        torch.manual_seed(0)
        return cfg, build_module(cfg)

    return _setup


@pytest.mark.parametrize("arch", ARCHS)
def test_full_changes_every_weight(setup, arch):
    cfg, module = setup(arch, "full")
    before = fit(cfg, module)
    diff = changed(module, before)
    assert all(diff.values()), [n for n, d in diff.items() if not d]
    assert module.parameter_counts()[0] == module.parameter_counts()[1]


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_backbone_stays_bit_identical(setup, arch):
    cfg, module = setup(arch, "frozen")
    before = fit(cfg, module)
    diff = changed(module, before)
    backbone = [n for n in diff if n.startswith("model.backbone.")]
    head = [n for n in diff if n.startswith("model.head.")]
    assert backbone and head and len(backbone) + len(head) == len(diff)
    assert not any(diff[n] for n in backbone)
    assert all(diff[n] for n in head)
    assert not module.model.backbone.training, "backbone must run in eval mode (no dropout)"


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_adapters_and_head_only(setup, arch):
    cfg, module = setup(arch, "lora")
    before = fit(cfg, module, epochs=2)
    diff = changed(module, before)
    lora = [n for n in diff if "lora_" in n]
    head = [n for n in diff if ".modules_to_save." in n]
    base = [n for n in diff if n not in lora and n not in head]
    assert lora and head and base
    assert not any(diff[n] for n in base), [n for n in base if diff[n]]
    assert all(diff[n] for n in lora + head), [n for n in lora + head if not diff[n]]
    # adapters sit on the attention query/value projections of every layer
    q, v = {"bert": ("query", "value"), "distilbert": ("q_lin", "v_lin"), "roberta": ("query", "value")}[arch]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora} == {q, v}
    expected_head = {
        "bert": {"pooler", "classifier"},
        "distilbert": {"pre_classifier", "classifier"},
        "roberta": {"classifier"},
    }[arch]
    assert {n.split(".modules_to_save")[0].rsplit(".", 1)[-1] for n in head} == expected_head


# Per peft strategy: the marker in its trained parameters' names, and which Linear modules of every encoder
# layer carry it (by name within the layer).
PEFT = {
    "lora_all": ("lora_", lambda parts, name: True),
    "dora": ("lora_", lambda parts, name: name.rsplit(".", 1)[-1] in parts.query_value),
    "ia3": ("ia3_l", lambda parts, name: name.rsplit(".", 1)[-1] in parts.key_value or name == parts.ffn_output),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("strategy", list(PEFT))
def test_peft_variants_train_their_adapters_and_head_only(setup, arch, strategy):
    cfg, module = setup(arch, strategy)
    marker, targeted = PEFT[strategy]
    plain = module.load_classifier()  # the same module names, without peft's wrappers
    parts = anatomy(plain)
    before = fit(cfg, module)
    diff = changed(module, before)
    adapters = [n for n in diff if marker in n]
    head = [n for n in diff if ".modules_to_save." in n]
    base = [n for n in diff if n not in adapters and n not in head]
    assert adapters and head and base
    assert not any(diff[n] for n in base), [n for n in base if diff[n]]
    assert all(diff[n] for n in adapters + head), [n for n in adapters + head if not diff[n]]
    adapted = {n.split(f".{marker}")[0].removeprefix("model.base_model.model.") for n in adapters}
    assert adapted == set(parts.linears(plain, lambda name: targeted(parts, name)))
    if strategy == "dora":  # a trained magnitude per output feature of every adapted projection
        assert all(diff[n] for n in diff if "lora_magnitude_vector" in n)
        assert any("lora_magnitude_vector" in n for n in diff)


@pytest.mark.parametrize("arch", ARCHS)
def test_bitfit_trains_biases_and_head_only(setup, arch):
    cfg, module = setup(arch, "bitfit")
    head = tuple(f"model.{name}." for name in anatomy(module.model).head)
    before = fit(cfg, module)
    diff = changed(module, before)
    trained = [n for n in diff if n.endswith(".bias") or n.startswith(head)]
    frozen = [n for n in diff if n not in trained]
    assert trained and frozen and all(n.endswith(".weight") for n in frozen)
    assert not any(diff[n] for n in frozen), [n for n in frozen if diff[n]]
    assert all(diff[n] for n in trained), [n for n in trained if not diff[n]]


class Probe(L.Callback):
    """Per training step, as its optimizer step begins: the trainable parameter names, each param group's LR,
    and copies of the watched parameters (not yet updated by the step)."""

    def __init__(self, watched: dict[str, torch.nn.Parameter]) -> None:
        self.watched = watched
        self.trainable: list[set[str]] = []
        self.lrs: list[list[float]] = []
        self.values: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.trainable.append({n for n, p in pl_module.named_parameters() if p.requires_grad})
        self.lrs.append([g["lr"] for g in optimizer.param_groups])
        self.values.append({n: p.detach().clone() for n, p in self.watched.items()})


@pytest.mark.parametrize("arch", ARCHS)
def test_gradual_unfreezes_on_schedule_and_new_groups_follow_the_schedule(setup, arch):
    """12 steps, 2 layers in 2 groups: the head alone for steps 0-2, + the top layer from step 3 (25%), + the
    bottom layer and the embeddings from step 9 (75%); each layer's LR decayed by its depth below the head."""
    cfg, module = setup(
        arch, "gradual", "strategy.groups=2", "strategy.head_only=0.25", "strategy.all_from=0.75",
        "strategy.layer_lr_decay=0.5",
    )  # fmt: skip
    parts = anatomy(module.model)
    names = {id(p): n for n, p in module.named_parameters()}
    layer = [{names[id(p)] for p in m.parameters()} for m in parts.layers]  # bottom to top
    embeddings = {names[id(p)] for p in parts.embeddings.parameters()}
    watched = {names[id(p)]: p for m in (parts.layers[0], parts.embeddings) for p in m.parameters()}
    probe = Probe(watched)
    before = fit(cfg, module, epochs=4, callbacks=[probe])

    head = probe.trainable[0]
    assert module.unfreeze.stage_steps(module, 12) == [0, 3, 9]
    assert head and not head & (embeddings | layer[0] | layer[1])
    assert probe.trainable[:3] == [head] * 3
    assert probe.trainable[3:9] == [head | layer[1]] * 6  # top layer first
    assert probe.trainable[9:] == [head | layer[1] | layer[0] | embeddings] * 3  # everything for the last part
    # what has not joined stays bit-identical until its stage, then trains
    for step in range(10):  # up to step 9's update
        assert all(torch.equal(probe.values[step][n], before[n]) for n in watched), step
    diff = changed(module, before)
    assert all(diff.values()), [n for n, d in diff.items() if not d]

    # groups added after the scheduler was built follow the same warm-up/decay multiplier, at lr x 0.5**depth
    head_groups = len(probe.lrs[0])
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    base = scheduler.base_lrs[0]
    for step in range(3, 12):
        multiplier = scheduler.lr_lambdas[0](step)
        assert probe.lrs[step][0] == pytest.approx(base * multiplier)
        assert probe.lrs[step][head_groups] == pytest.approx(base * 0.5 * multiplier)  # the top layer's
    for step in range(9, 12):
        multiplier = scheduler.lr_lambdas[0](step)
        lrs = {round(lr / (base * multiplier), 6) for lr in probe.lrs[step]}
        assert lrs == {1.0, 0.5, 0.25, 0.125}, lrs  # head, top layer, bottom layer, embeddings
    top_layer_lrs = [lrs[head_groups] for lrs in probe.lrs[3:]]
    assert len(set(top_layer_lrs)) == len(top_layer_lrs), "an unfrozen group's LR must change every step"


def test_gradual_schedule_fits_any_run_length(setup):
    """750 steps or 6: the stages spread over the steps there are, and everything trains at the end."""
    cfg, module = setup("bert", "gradual")
    assert module.unfreeze.stage_steps(module, 750) == [0, 75, 375]  # 2 layers (groups 3 -> 2), 10% / 50%
    probe = Probe({})
    before = fit(cfg, module, epochs=2, callbacks=[probe])  # 6 steps: stages from steps 0, 1 and 3
    assert probe.trainable[-1] == {n for n, _ in module.named_parameters()}
    assert probe.trainable[0] < probe.trainable[1] == probe.trainable[2] < probe.trainable[3]
    assert all(changed(module, before).values())


class GraphProbe(L.Callback):
    """Per training step: which encoder layers' outputs carry an autograd graph (and so stored activations)."""

    def __init__(self, layers) -> None:
        self.steps: list[list[bool]] = []
        self.current: list[bool] = []
        for layer in layers:
            layer.register_forward_hook(self.record)

    def record(self, layer, args, output) -> None:
        if layer.training:
            self.current.append((output[0] if isinstance(output, tuple) else output).requires_grad)

    def on_train_batch_end(self, *args) -> None:
        self.steps.append(self.current)
        self.current = []


@pytest.mark.parametrize("strategy", ["gradual", "lora"])
def test_no_graph_below_the_lowest_trainable_layer(setup, strategy):
    """Layers with nothing trainable at or below them run without a graph: nothing stored, no backward."""
    cfg, module = setup("bert", strategy)
    bert = (module.model.get_base_model() if strategy == "lora" else module.model).bert
    probe = GraphProbe(bert.encoder.layer)
    fit(cfg, module, epochs=2, callbacks=[probe])
    if strategy == "gradual":  # 6 steps: head only; + the top layer from step 1; everything from step 3
        assert probe.steps == [[False, False]] + [[False, True]] * 2 + [[True, True]] * 3
    else:  # adapters in every layer, but the frozen embeddings need no gradient
        assert probe.steps == [[True, True]] * 6
        assert not any(p.requires_grad for p in bert.embeddings.parameters())


def test_gradient_clipping_works_with_the_fused_optimizer_in_bf16(setup):
    """Lightning's mixed-precision plugin refuses clipping with fused AdamW; ours clips (no scaler in bf16)."""
    cfg, module = setup("bert", "full", "optimizer.lr=1.0")
    assert module.optimizer_factory.keywords["fused"] is True
    norms = []

    class Norms(L.Callback):
        def on_before_zero_grad(self, trainer, pl_module, optimizer):  # grads of the previous step
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            if grads:
                norms.append(float(torch.nn.utils.get_total_norm(grads)))

    datamodule = instantiate(cfg.data, _convert_="all")
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        precision="bf16-mixed",
        gradient_clip_val=0.05,
        callbacks=[Norms()],
    )
    trainer.fit(module, datamodule=datamodule)
    assert len(norms) == 2 and all(n == pytest.approx(0.05, rel=1e-3) for n in norms), norms


def test_a_frozen_head_over_more_layers_than_the_model_has_reads_them_all_and_says_so(tiny_models, caplog):
    """strategy.layers counts the last n layers; 4 on a 2-layer model is all of them (a logged fallback); `all`
    (the default) is every hidden state, the embeddings' first; naming a hidden state the model lacks is refused
    (tests/test_validation.py)."""
    import logging

    from transformers import AutoModel

    from ftcompare.models import PooledClassifier

    backbone = AutoModel.from_pretrained(tiny_models["bert"])
    with caplog.at_level(logging.INFO, logger="ftcompare.models"):
        head = PooledClassifier(backbone, num_labels=2, layers=4)
    assert head.layers == (-1, -2)
    assert "strategy.layers=4: this model has 2 layers, the head reads all of them" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ftcompare.models"):
        assert PooledClassifier(backbone, num_labels=2, layers=2).layers == (-1, -2)
    assert "strategy.layers" not in caplog.text
    every = PooledClassifier(backbone, num_labels=2, layers="all")
    assert every.layers == (0, 1, 2) and every.head[1].in_features == 3 * backbone.config.hidden_size
