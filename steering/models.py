"""Loading a chat model: the embedded SmolLM2 default (GGUF in a PyPI package) or any hub id / folder.

The embedded model's cache and conversion: steering.embedded; device, dtype and CPU threads: steering.device.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from steering.config import EMBEDDED_MODEL, ModelSettings, model_slug
from steering.core.layers import decoder_layers
from steering.decode.cpu_linear import use_few_row_linear
from steering.device import resolve_device, resolve_dtype, set_threads
from steering.embedded import embedded_model_dir
from steering.errors import SteeringError

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class LoadedModel:
    """A model with its tokenizer and the facts the UI and the vectors need (what load_model returns).

    Attributes:
        model: the transformers causal LM (PreTrainedModel), in eval mode.
        tokenizer: its tokenizer (PreTrainedTokenizerBase), with a chat template.
        name: the name it was loaded by (ModelSettings.name: hub id, folder or the embedded model).
        slug: a file-name-safe form of `name` (how vector files are named per model).
        dtype, device: the weights' dtype and the device of the first parameter.
        quantization: "8bit", "4bit" or None.
        num_layers: number of decoder blocks (steering layers are 0 .. num_layers - 1).
        hidden_size: width of the residual stream; every steering vector has shape (hidden_size,).
        load_seconds: wall-clock seconds load_model took.
        settings: the ModelSettings it was loaded with.
        lock: held during one generation (the steering hooks are per-module state).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    slug: str
    dtype: torch.dtype
    device: torch.device
    quantization: str | None
    num_layers: int
    hidden_size: int
    load_seconds: float
    settings: ModelSettings
    # One generation at a time per loaded model: the steering hooks are per-module state.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> str:
        """One line for headers: name · dtype or quantization · device · layers · hidden size."""
        quant = self.quantization or str(self.dtype).replace("torch.", "")
        return f"{self.name} · {quant} · {self.device} · {self.num_layers} layers · hidden {self.hidden_size}"


# transformers 5.24 renamed forward(past_key_values=) to cache=; older 5.x releases take `cache=` as an
# unknown keyword and run without a KV cache, so decoding would silently produce wrong text.
MIN_TRANSFORMERS = "5.24"


def check_transformers() -> None:
    """Refuse a transformers older than MIN_TRANSFORMERS.

    Raises:
        SteeringError: the installed version is too old (the message gives the pip command).
    """
    import transformers  # transformers loads only when a model is loaded (see TYPE_CHECKING above)
    from packaging.version import Version

    if Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
        raise SteeringError(
            f"transformers {transformers.__version__} is installed, LLaMA Steering needs "
            f">= {MIN_TRANSFORMERS}: pip install -U 'transformers>={MIN_TRANSFORMERS},<6'"
        )


def _quantization_config(settings: ModelSettings, dtype: torch.dtype) -> Any:
    if settings.load_in_8bit and settings.load_in_4bit:
        raise SteeringError("choose one of load_in_8bit and load_in_4bit, not both")
    if not (settings.load_in_8bit or settings.load_in_4bit):
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SteeringError("8-bit/4-bit loading needs bitsandbytes; run: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig  # transformers loads with a model only (see TYPE_CHECKING above)

    if settings.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if dtype != torch.float32 or not torch.cuda.is_available() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def check_model_folder(path: Path) -> None:
    """A local --model path must be a folder holding a transformers model (config.json).

    Raises SteeringError (one line) naming the path and what is missing.
    """
    if not path.is_dir():
        raise SteeringError(
            f"model '{path}' is a file, not a model folder (expected a folder with config.json "
            "and the weights, or a Hugging Face hub id)"
        )
    if not (path / "config.json").is_file():
        raise SteeringError(
            f"model folder '{path}' has no config.json: it does not hold a transformers model "
            "(pass the folder that has config.json and the weights, or a Hugging Face hub id)"
        )


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load a chat model and its tokenizer as `settings` say (dtype, device, 8-/4-bit, threads).

    Args:
        settings: ModelSettings: `name` is a hub id, a local folder with config.json or the embedded
            "smollm2-135m-instruct"; dtype / device "auto" pick by hardware; HF_TOKEN is read from the
            environment for gated models.

    Returns:
        LoadedModel: the model (eval mode), its tokenizer, num_layers, hidden_size, dtype, device and
        load time.

    Raises:
        SteeringError: one line for every failure a user can cause: a transformers version too old, both
            or unsupported 8-/4-bit options (bitsandbytes missing), a path that is a file or a folder
            without config.json, a folder transformers cannot read, an unknown or unavailable device, an
            unknown dtype, a bad thread count, a gated hub model without access, a
            name that is neither a folder nor reachable on the hub. Other errors of transformers for a
            hub id propagate unchanged.

    Example:
        >>> lm = load_model(ModelSettings())  # doctest: +SKIP
        >>> lm.num_layers, lm.hidden_size  # doctest: +SKIP
        (30, 576)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer  # as above: with a model only

    check_transformers()
    set_threads(settings.threads)
    start = time.perf_counter()
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    quantization = _quantization_config(settings, dtype)
    source: Path | str
    if settings.name == EMBEDDED_MODEL:
        source, _ = embedded_model_dir()
    else:
        source = Path(settings.name) if Path(settings.name).exists() else settings.name
    if isinstance(source, Path):
        check_model_folder(source)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if settings.device_map:
        kwargs["device_map"] = settings.device_map
    elif quantization is not None:
        kwargs["device_map"] = {"": str(device)}
    token = os.environ.get("HF_TOKEN")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, token=token)
        model = AutoModelForCausalLM.from_pretrained(source, token=token, **kwargs)
    except Exception as exc:
        if isinstance(source, Path):  # a local folder that transformers cannot read: one line, no traceback
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SteeringError(
                f"cannot load model from folder '{source}': {type(exc).__name__}: {first[:300]}"
            ) from None
        if not isinstance(exc, OSError):
            raise
        text = str(exc)
        if "gated" in text.lower() or "401" in text or "403" in text or "access" in text.lower():
            raise SteeringError(
                f"model '{settings.name}' is gated: accept its licence on huggingface.co, then set HF_TOKEN "
                "(or pass a local folder with --model PATH)"
            ) from None
        raise SteeringError(
            f"cannot load model '{settings.name}': not a local folder and not reachable on the Hugging Face hub "
            "(check the id, your network, HF_TOKEN, or download it and pass --model PATH)"
        ) from None
    if quantization is None and not settings.device_map:
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    if quantization is None and dtype == torch.float32:  # switches CPU layers only
        use_few_row_linear(model)  # decoding steps at memory speed (see steering/decode/cpu_linear.py)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    num_layers = len(decoder_layers(model))
    first_param = next(model.parameters())
    quant_name = "8-bit" if settings.load_in_8bit else "4-bit nf4" if settings.load_in_4bit else None
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=settings.name,
        slug=model_slug(settings.name),
        dtype=dtype,
        device=first_param.device,
        quantization=quant_name,
        num_layers=num_layers,
        hidden_size=int(model.config.hidden_size),
        load_seconds=time.perf_counter() - start,
        settings=settings,
    )
