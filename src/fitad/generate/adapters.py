"""LoRA adapters for a warm pipeline: where they come from, a CPU-side LRU, a bounded resident set, hot swap.

An adapter reference is a training output directory (``LORA_DIR``), an exported ``.safetensors`` (kohya/WebUI
or diffusers form) or an MLflow model URI (``models:/NAME@approved``, ``models:/NAME/3``, ``runs:/ID/path``).

References are resolved by :mod:`fitad.generate.lora_source`. The first time the pool sees an adapter it loads it with :func:`fitad.lora.load.load_lora_into_pipeline` (the
loader checked against ComfyUI, kohya, A1111 and diffusers) and reads back the canonical PEFT state of every
layer, with each module's ``alpha / rank`` folded into ``lora_A``. That state dict stays in CPU memory (LRU of
``cached_adapters``), so a later use never reads or converts the file again. Folding the scale matters for hot
swap: after an in-place swap PEFT keeps the *first* adapter's ``alpha / rank`` when ``set_adapters`` applies a
per-request weight, which would silently mis-scale every later adapter with a different ratio.

* **Hot swap** (``RenderConfig.hotswap``): a LoRA that touches only the UNet/transformer is swapped *into one
  slot in place* when its target modules are those of the slot. The slot is made by diffusers
  (``enable_lora_hotswap`` pads it to ``hotswap_max_rank``); a swap copies the new tensors into its padded
  parameters (diffusers' ``hotswap=True`` load is the fallback). No module is created or freed.
* **Resident set**: every other adapter (text-encoder LoRA, DoRA, other targets, larger rank, LoKr) is loaded
  under its own name; at most ``resident_adapters`` stay loaded, the least recently used is deleted.

The base pipeline is never reloaded. Callers serialise access (the pipeline is not thread-safe).
"""

from __future__ import annotations

import collections
import dataclasses
import time
import warnings
from typing import Any

import torch

from fitad.generate.config import RenderConfig
from fitad.generate.lora_source import AdapterSource
from fitad.lora.export import DENOISER, fix_text_encoder_dora_keys
from fitad.lora.load import load_lora_into_pipeline

HOT_SLOT = "hot"


@dataclasses.dataclass
class CachedAdapter:
    """An adapter's canonical state on the CPU: per component, the PEFT state dict and its LoraConfig."""

    components: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]]
    module_keys: frozenset[str]       # "component.module_path" of every adapted layer
    max_rank: int
    use_dora: bool
    nbytes: int

    @property
    def denoiser_only(self) -> bool:
        return set(self.components) <= {"unet", "transformer"}


# ---------------------------------------------------------------- canonical state

def _lora_layers(model: torch.nn.Module, adapter: str):
    for path, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, torch.nn.ModuleDict) and adapter in lora_a:
            yield path, module


def extract_adapter(pipe: Any, adapter: str, components: tuple[str, ...]) -> CachedAdapter | None:
    """Read ``adapter`` back from the pipeline's PEFT layers, scale folded into ``lora_A``; None for LoKr."""
    out: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
    keys: set[str] = set()
    max_rank, nbytes, any_dora = 0, 0, False
    for component in components:
        model = getattr(pipe, component, None)
        if model is None or adapter not in (getattr(model, "peft_config", None) or {}):
            continue
        config = model.peft_config[adapter]
        if type(config).__name__ != "LoraConfig":
            return None  # LoKr and friends: reloaded from their file instead
        state: dict[str, torch.Tensor] = {}
        ranks: dict[str, int] = {}
        use_dora = bool(getattr(config, "use_dora", False))
        for path, module in _lora_layers(model, adapter):
            scaling = float(module.scaling[adapter])
            weight_a = module.lora_A[adapter].weight.detach()
            # scaling = weight * alpha / r; the pool loads with weight 1, so this is alpha / r
            state[f"{component}.{path}.lora_A.weight"] = (weight_a.float() * scaling).to(weight_a.dtype).cpu().clone()
            state[f"{component}.{path}.lora_B.weight"] = module.lora_B[adapter].weight.detach().cpu().clone()
            if use_dora:
                magnitude = module.lora_magnitude_vector[adapter].weight.detach().cpu().clone()
                state[f"{component}.{path}.lora_magnitude_vector"] = magnitude
            ranks[path] = int(weight_a.shape[0])
            keys.add(f"{component}.{path}")
        if not state:
            continue
        common = collections.Counter(ranks.values()).most_common(1)[0][0]
        odd = {p: r for p, r in ranks.items() if r != common}
        # alpha = rank everywhere: the scale now lives in lora_A, so PEFT's own scaling is exactly the weight
        lora_config = {"r": common, "lora_alpha": common, "rank_pattern": odd, "alpha_pattern": dict(odd),
                       "target_modules": sorted(ranks), "use_dora": use_dora, "lora_dropout": 0.0,
                       "bias": "none", "init_lora_weights": True}
        if component == "text_encoder":
            state = fix_text_encoder_dora_keys(state)
        out[component] = (state, lora_config)
        max_rank = max(max_rank, *ranks.values())
        nbytes += sum(t.numel() * t.element_size() for t in state.values())
        any_dora = any_dora or use_dora
    if not out:
        return None
    return CachedAdapter(components=out, module_keys=frozenset(keys), max_rank=max_rank, use_dora=any_dora,
                         nbytes=nbytes)


def load_cached(pipe: Any, cached: CachedAdapter, adapter: str, *, hotswap: bool = False) -> None:
    """Load a cached adapter into ``pipe`` under ``adapter`` (in place into an existing one with ``hotswap``)."""
    for component, (state, config) in cached.components.items():
        config = {f"{component}.{k}": v for k, v in config.items()}  # diffusers keeps the keys of its prefix
        if component == "text_encoder":
            pipe.load_lora_into_text_encoder(dict(state), network_alphas=None, text_encoder=pipe.text_encoder,
                                             prefix="text_encoder", lora_scale=1.0, adapter_name=adapter,
                                             metadata=config, _pipeline=pipe)
        elif component == "unet":
            pipe.load_lora_into_unet(dict(state), network_alphas=None, unet=pipe.unet, adapter_name=adapter,
                                     metadata=config, _pipeline=pipe, hotswap=hotswap)
        else:
            pipe.load_lora_into_transformer(dict(state), network_alphas=None, transformer=pipe.transformer,
                                            adapter_name=adapter, metadata=config, _pipeline=pipe,
                                            hotswap=hotswap)


# ---------------------------------------------------------------- the pool

@dataclasses.dataclass
class Activation:
    """How the requested adapter was made active (goes into the render metadata)."""

    adapter: str         # adapter name inside the pipeline
    how: str             # "hotswap" | "hot-slot" | "resident" | "loaded" | "from-cpu-cache"
    seconds: float
    evicted: list[str]


class AdapterPool:
    """Adapters of one pipeline: CPU LRU of canonical state dicts, hot slot, bounded resident set."""

    def __init__(self, pipe: Any, family: str, config: RenderConfig) -> None:
        self.pipe = pipe
        self.family = family
        self.config = config
        self.components = (DENOISER[family], "text_encoder")
        self.cpu: collections.OrderedDict[str, CachedAdapter] = collections.OrderedDict()
        self.resident: collections.OrderedDict[str, str] = collections.OrderedDict()  # key -> adapter name
        self.hot_key: str | None = None
        self.hot_modules: frozenset[str] | None = None
        self._counter = 0
        self._hot_params: dict[str, torch.Tensor] = {}
        self._active: tuple[str, float] | None = None   # (adapter, weight) last given to set_adapters
        self._disabled = False
        self.stats = collections.Counter()

    # -- queries
    def loaded_adapters(self) -> list[str]:
        """Adapter names currently loaded in any pipeline component."""
        names: set[str] = set()
        for component in self.components:
            model = getattr(self.pipe, component, None)
            names.update((getattr(model, "peft_config", None) or {}).keys())
        return sorted(names)

    def cpu_bytes(self) -> int:
        return sum(c.nbytes for c in self.cpu.values())

    # -- activation
    def activate(self, source: AdapterSource, scale: float = 1.0) -> Activation:
        """Make ``source`` the only active adapter, weighted by ``scale``."""
        with warnings.catch_warnings():
            # PEFT warns on every second adapter and on deleting the active one: both are what the pool means
            warnings.simplefilter("ignore", UserWarning)
            return self._activate(source, scale)

    def _activate(self, source: AdapterSource, scale: float) -> Activation:
        started = time.perf_counter()
        evicted: list[str] = []
        if source.key == self.hot_key:
            name, how = HOT_SLOT, "hot-slot"
        elif source.key in self.resident:
            self.resident.move_to_end(source.key)
            name, how = self.resident[source.key], "resident"
        else:
            cached = self.cpu.get(source.key)
            if cached is None:
                name, how, cached = self._first_load(source)
            else:
                self.cpu.move_to_end(source.key)
                how = "from-cpu-cache"
                name = None
            hot_how = None
            if cached is not None and self._hot_fits(cached):
                if name is not None:  # read through the verified loader: move it into the hot slot
                    self._delete(name)
                hot_how = self._load_hot(source.key, cached)
            if hot_how is not None:
                name, how = HOT_SLOT, hot_how
            elif name is None or name not in self.loaded_adapters():
                name = self._new_name()
                self._load_or_clean(name, lambda: load_cached(self.pipe, cached, name))
                self.resident[source.key] = name
            else:
                self.resident[source.key] = name
            evicted = self._evict()
        if self._disabled:
            self.pipe.enable_lora()
            self._disabled = False
        if self._active != (name, float(scale)):  # set_adapters walks every layer: skip it when nothing changes
            self.pipe.set_adapters([name], adapter_weights=[float(scale)])
            self._active = (name, float(scale))
        self.stats[how] += 1
        return Activation(adapter=name, how=how, seconds=time.perf_counter() - started, evicted=evicted)

    def deactivate(self) -> None:
        """Render the base model alone (adapters stay loaded)."""
        if self.loaded_adapters() and not self._disabled:
            self.pipe.disable_lora()
            self._disabled = True

    def clear(self) -> None:
        """Unload every adapter and drop the CPU cache."""
        for name in self.loaded_adapters():
            self._delete(name)
        self.resident.clear()
        self.cpu.clear()
        self._reset_hot()

    # -- internals
    def _new_name(self) -> str:
        self._counter += 1
        return f"lora{self._counter}"

    def _first_load(self, source: AdapterSource) -> tuple[str, str, CachedAdapter | None]:
        name = self._new_name()
        self._load_or_clean(name, lambda: load_lora_into_pipeline(self.pipe, source.path, 1.0, adapter_name=name))
        self._active = (name, 1.0)  # load_lora_into_pipeline made it the only active adapter
        cached = extract_adapter(self.pipe, name, self.components)
        if cached is not None:
            self.cpu[source.key] = cached
            while len(self.cpu) > self.config.cached_adapters:
                self.cpu.popitem(last=False)
        return name, "loaded", cached

    def _load_or_clean(self, name: str, load: Any) -> None:
        """Run ``load``; if it fails half-way (UNet part in, text-encoder part refused), remove what went in."""
        self._active = None
        try:
            load()
        except Exception:
            if name in self.loaded_adapters():
                self.pipe.delete_adapters(name)
            raise

    def _hot_fits(self, cached: CachedAdapter) -> bool:
        if not self.config.hotswap or not cached.denoiser_only or cached.use_dora:
            return False
        if cached.max_rank > self.config.hotswap_max_rank:
            return False
        denoiser = getattr(self.pipe, self.components[0])
        # a LoKr (or other non-LoRA) adapter wraps the slot's layers: swapping in place would break the slot
        if any(type(c).__name__ != "LoraConfig" for c in (getattr(denoiser, "peft_config", None) or {}).values()):
            return False
        return self.hot_modules is None or cached.module_keys == self.hot_modules

    def _load_hot(self, key: str, cached: CachedAdapter) -> str | None:
        """Put ``cached`` into the hot slot; None when it cannot go there (then it is loaded by name)."""
        if self.hot_modules is None:
            # pad the slot to the largest rank it will take, so later swaps of other ranks fit in place
            self.pipe.enable_lora_hotswap(target_rank=self.config.hotswap_max_rank, check_compiled="ignore")
            self._load_or_clean(HOT_SLOT, lambda: load_cached(self.pipe, cached, HOT_SLOT))
            self.hot_modules = cached.module_keys
            self._hot_params = self._index_hot_slot()
            how = "hot-slot"
        elif self._copy_into_slot(cached):
            how = "hotswap"
        else:
            try:  # diffusers' own in-place swap (it validates shapes and configs itself)
                load_cached(self.pipe, cached, HOT_SLOT, hotswap=True)
                self._active = None
            except (RuntimeError, ValueError, KeyError):
                self._reset_hot()
                return None
            self._hot_params = self._index_hot_slot()
            how = "hotswap"
        self.hot_key = key
        return how

    def _index_hot_slot(self) -> dict[str, torch.Tensor]:
        """State-dict key (``unet.<module>.lora_A.weight``) -> the hot slot's parameter holding it."""
        params: dict[str, torch.Tensor] = {}
        marker = f".{HOT_SLOT}."
        for component in self.components:
            model = getattr(self.pipe, component, None)
            if model is None:
                continue
            for name, param in model.named_parameters():
                if marker in name:
                    params[f"{component}.{name.replace(marker, '.')}"] = param
        return params

    def _copy_into_slot(self, cached: CachedAdapter) -> bool:
        """Hot swap by copying the adapter's tensors into the slot's (rank-padded) parameters.

        The slot was made by diffusers' ``enable_lora_hotswap`` + load, so its layers, padding and scaling are
        PEFT's own; with every adapter's scale folded into ``lora_A`` the slot's scaling is the request weight,
        and only the weights change. False (nothing touched) when a key or shape does not fit.
        """
        state: dict[str, torch.Tensor] = {}
        for component_state, _config in cached.components.values():
            state.update(component_state)
        if set(state) != set(self._hot_params):
            return False
        for key, value in state.items():
            param = self._hot_params[key]
            rank_dim = 0 if ".lora_A." in key else 1
            if (value.ndim != param.ndim or value.shape[rank_dim] > param.shape[rank_dim]
                    or any(v != p for i, (v, p) in enumerate(zip(value.shape, param.shape)) if i != rank_dim)):
                return False
        with torch.no_grad():
            for key, value in state.items():
                param = self._hot_params[key]
                rank = value.shape[0 if ".lora_A." in key else 1]
                param.zero_()
                target = param[:rank] if ".lora_A." in key else param[:, :rank]
                target.copy_(value.to(param.device, param.dtype))
        return True

    def _reset_hot(self) -> None:
        if HOT_SLOT in self.loaded_adapters():
            self._delete(HOT_SLOT)
        self.hot_key = self.hot_modules = None
        self._hot_params = {}

    def _delete(self, name: str) -> None:
        self.pipe.delete_adapters(name)
        self._active = None

    def _evict(self) -> list[str]:
        evicted = []
        while len(self.resident) > self.config.resident_adapters:
            _key, name = self.resident.popitem(last=False)
            self._delete(name)
            evicted.append(name)
        return evicted
