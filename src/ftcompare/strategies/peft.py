"""peft methods: LoRA (and its variants by config: `lora_all` on every encoder Linear, `dora`) and IA3.

The base model's weights stay frozen; the adapters and the classification head train. Target modules are
found per architecture by `models.anatomy`, so the same config works on BERT, DistilBERT and RoBERTa.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from peft import IA3Config, LoraConfig, TaskType, get_peft_model
from peft.utils.error import NoMatchingPeftModuleError

from ftcompare.errors import ConfigError
from ftcompare.models import anatomy
from ftcompare.settings import integer_setting, number_setting
from ftcompare.strategies.base import FineTuningStrategy
from ftcompare.strategies.registry import register


@register("lora", "lora_all", "dora")
class LoRA(FineTuningStrategy):
    """peft LoRA, by default on the attention query/value projections; base weights frozen; the head trains.

    `target_modules`: leaf or full module names, null for the model's query/value projections, or
    `all-linear` for every Linear of the encoder layers. `use_dora`: DoRA's trained magnitude per output feature.
    """

    saves_trainable_only = True

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.1,
        target_modules: list[str] | str | None = None,
        use_dora: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model = self.load_classifier()
        parts = anatomy(model)
        if target_modules == "all-linear":
            target_modules = parts.linears(model, lambda name: True)
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=list(target_modules or parts.query_value),
            use_dora=use_dora,
            modules_to_save=parts.head,  # e.g. DistilBERT's pre_classifier, BERT's pooler
        )
        try:
            self.model = get_peft_model(model, config)
        except NoMatchingPeftModuleError as err:
            linears = sorted({name.rsplit(".", 1)[-1] for name in parts.linears(model, lambda name: True)})
            asked, kind = sorted(config.target_modules), model.config.model_type
            raise ConfigError(
                f"strategy.target_modules={asked} matches no module of this {kind} model. Fix: some of its "
                f"Linear layers {linears}, null for its query/value projections ({sorted(parts.query_value)}), "
                "or all-linear"
            ) from err

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        if "r" in cfg.strategy:
            integer_setting(cfg, "strategy.r", "the LoRA rank, e.g. strategy.r=8")
        if "alpha" in cfg.strategy:
            number_setting(cfg, "strategy.alpha", "e.g. strategy.alpha=16")
        if cfg.strategy.get("dropout", 0) != 0:
            number_setting(cfg, "strategy.dropout", "e.g. strategy.dropout=0.1", high=1.0)


@register("ia3")
class IA3(FineTuningStrategy):
    """peft IA3: learned vectors rescale the attention keys and values and the input of the feed-forward
    down projection (module names found per architecture, e.g. DistilBERT's k_lin/v_lin/ffn.lin2); the head trains."""

    saves_trainable_only = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        model = self.load_classifier()
        parts = anatomy(model)
        if parts.key_value is None:
            raise ConfigError(
                f"model_type={model.config.model_type!r}: no attention key/value projections found for IA3. "
                "Fix: another strategy, e.g. strategy=lora"
            )
        feedforward = parts.linears(model, lambda name: name == parts.ffn_output)
        config = IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=parts.linears(model, lambda name: name.rsplit(".", 1)[-1] in parts.key_value) + feedforward,
            feedforward_modules=feedforward,
            modules_to_save=parts.head,
        )
        self.model = get_peft_model(model, config)
