"""A model larger than one GPU (issue 12 section 3): a random Llama-2-70B-shaped fp16 model over two GPUs.

The model is built on the meta device (no checkpoint is written: 140 GB would not fit the disk) and each
part is materialised on its GPU with random weights, then dispatched with accelerate like
`from_pretrained(device_map=...)` does (hidden states move between GPUs inside the forward). The Engine
runs it on the eager path (the CUDA-graph fast path is for one-device models). Three panes (+alpha, 0,
-alpha) are generated steered at a layer on the second GPU and at one on the first: tok/s per pane and
memory per GPU. Then the same shape in 4-bit nf4 (bitsandbytes Linear4bit, each layer quantised on the GPU
as it is made) on one GPU, when bitsandbytes imports.

    python scripts/gpu_70b.py --out OUT                 # two CUDA GPUs (80 GB+ each)
    python scripts/gpu_70b.py --out OUT --smoke         # a tiny model of the same layout on the CPU
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from gpu_common import Sections, json_saver, parse_args  # noqa: E402

QUESTION = [{"role": "user", "content": "Tell me about the history of the printing press in a few paragraphs."}]


def _init_(module: Any) -> None:
    """Random weights in place: matrices N(0, 0.02), norms 1."""
    for param in module.parameters(recurse=False):
        if param.dim() >= 2:
            param.data.normal_(0.0, 0.02)
        else:
            param.data.fill_(1.0)


def split_map(layers: int, devices: list[str]) -> dict[str, str]:
    """An accelerate device_map: embeddings and the first half of the blocks on devices[0], the rest with the
    final norm and the LM head on devices[-1] (the same layout `device_map: auto` gives two equal GPUs)."""
    half = (layers + len(devices) - 1) // len(devices)
    mapping = {"model.embed_tokens": devices[0], "model.rotary_emb": devices[0]}
    for i in range(layers):
        mapping[f"model.layers.{i}"] = devices[min(i // half, len(devices) - 1)]
    mapping.update({"model.norm": devices[-1], "lm_head": devices[-1]})
    return mapping


def build_split(config: Any, dtype: torch.dtype, devices: list[str]) -> tuple[Any, dict[str, str]]:
    """The model over `devices` with random weights, dispatched (accelerate hooks move activations)."""
    from accelerate import dispatch_model
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(dtype)
    mapping = split_map(config.num_hidden_layers, devices)
    for name, device in mapping.items():
        part = model.get_submodule(name)
        if name == "model.rotary_emb":
            with torch.device(device):
                model.model.rotary_emb = LlamaRotaryEmbedding(config)
            continue
        part.to_empty(device=device)
        for sub in part.modules():
            _init_(sub)
    model.eval().requires_grad_(False)
    model = dispatch_model(model, device_map=mapping)
    return model, mapping


def build_4bit(config: Any, device: str) -> Any:
    """The model on one GPU with every block's Linear layers in bitsandbytes nf4 (quantised layer by layer)."""
    import bitsandbytes as bnb
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.float16)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                weight = torch.empty(child.out_features, child.in_features, device=device, dtype=torch.float16)
                weight.normal_(0.0, 0.02)
                quantized = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=False,
                    compute_dtype=torch.float16,
                    quant_type="nf4",
                    device="meta",
                )
                quantized.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4").to(device)
                setattr(parent, name, quantized)
                del weight
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.to_empty(device=device)
            _init_(norm)
    for part in (model.model.embed_tokens, model.model.norm, model.lm_head):
        part.to_empty(device=device)
        _init_(part)
    with torch.device(device):
        model.model.rotary_emb = LlamaRotaryEmbedding(config)
    return model.eval().requires_grad_(False)


def loaded(model: Any, config: Any, device: str, quantization: str | None, name: str, device_map: Any) -> Any:
    """A steering.models.LoadedModel around the built model (byte tokenizer, no EOS: fixed lengths)."""
    from steering.config import ModelSettings
    from steering.models import LoadedModel
    from steering.synthetic import make_byte_tokenizer

    model.config.eos_token_id = None
    model.generation_config.eos_token_id = None
    settings = ModelSettings(name=name, dtype="float16", device=device.split(":")[0], device_map=device_map)
    return LoadedModel(
        model=model,
        tokenizer=make_byte_tokenizer(),
        name=name,
        slug=name,
        dtype=torch.float16 if quantization is None else torch.float16,
        device=torch.device(device),
        quantization=quantization,
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        load_seconds=0.0,
        settings=settings,
    )


def panes(lm: Any, layers: list[int], tokens: int, repeats: int, smoke: bool) -> dict[str, Any]:
    """Three panes through the Engine's generation (eager path unless the Engine picks a fast path), per layer."""
    from steering.config import load_config
    from steering.decode.generation import SamplingSettings, SteeringSpec
    from steering.engine import Engine

    engine = Engine(lm, load_config())
    result: dict[str, Any] = {
        "fast_path": None if engine.fast_path is None else type(engine.fast_path).__name__,
        "layers": {},
    }
    settings = SamplingSettings(max_new_tokens=tokens)
    gen = torch.Generator().manual_seed(0)
    for layer in layers:
        vector = torch.randn(lm.hidden_size, generator=gen)
        norm = engine.hidden_norm(layer)
        vector = vector / vector.norm() * 0.5 * norm
        on = _layer_device(lm.model, layer)

        def run(tokens_: int = tokens, vector: torch.Tensor = vector, layer: int = layer) -> Any:
            return engine._generate(
                [QUESTION] * 3,
                SamplingSettings(max_new_tokens=tokens_),
                None,
                multipliers=[4.0, 0.0, -4.0],
                steer=SteeringSpec(layer, vector),
                ignore_eos=True,
            )

        run(4)  # warm-up
        times = []
        for _ in range(repeats):
            if not smoke:
                for i in range(torch.cuda.device_count()):
                    torch.cuda.synchronize(i)
            start = time.perf_counter()
            out = run()
            if not smoke:
                for i in range(torch.cuda.device_count()):
                    torch.cuda.synchronize(i)
            times.append(time.perf_counter() - start)
        plain = engine._generate([QUESTION], settings, None, ignore_eos=True).token_ids[0]
        result["layers"][str(layer)] = {
            "device": on,
            "hidden_norm": norm,
            "vector_norm": float(vector.norm()),
            "tokens": tokens,
            "tok_s_per_pane": tokens / sorted(times)[len(times) // 2],
            "raw_s": times,
            "steered_rows_differ_from_unsteered": [
                out.token_ids[0] != out.token_ids[1],
                out.token_ids[2] != out.token_ids[1],
            ],
            "unsteered_pane_equals_plain": out.token_ids[1] == plain,
        }
        print(layer, result["layers"][str(layer)], flush=True)
    return result


def _layer_device(model: Any, layer: int) -> str:
    from steering.core.layers import decoder_layers

    return str(next(decoder_layers(model)[layer].parameters()).device)


def memory() -> dict[str, Any]:
    """Allocated / peak allocated / reserved GiB per GPU."""
    if not torch.cuda.is_available():
        return {}
    return {
        f"cuda:{i}": {
            "allocated_gib": round(torch.cuda.memory_allocated(i) / 2**30, 2),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated(i) / 2**30, 2),
            "reserved_gib": round(torch.cuda.memory_reserved(i) / 2**30, 2),
        }
        for i in range(torch.cuda.device_count())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-4bit", action="store_true")
    args, out = parse_args(parser, argv, gpus=2)
    from steering.synthetic import LLAMA2_70B, TINY, llama_config

    # the smoke model keeps the 70B layout's grouped-query attention (fewer key/value heads than heads)
    shape = replace(TINY, layers=8, kv_heads=2) if args.smoke else LLAMA2_70B
    config = llama_config(shape)
    devices = ["cpu", "cpu"] if args.smoke else ["cuda:0", "cuda:1"]
    report: dict[str, Any] = {
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if not args.smoke
        else ["cpu"],
        "torch": torch.__version__,
        "shape": asdict(shape),
    }

    section = Sections(report, json_saver(report, out / "gpu70b.json")).run

    layers = config.num_hidden_layers
    steer_layers = [int(layers * 0.75), int(layers * 0.25)]  # on the second GPU, then on the first

    def fp16_split() -> dict[str, Any]:
        start = time.perf_counter()
        model, mapping = build_split(config, torch.float16, devices)
        built = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters())
        lm = loaded(model, config, devices[0], None, "random-llama-2-70b-shape", "auto")
        result = {"build_s": built, "params": params, "memory_after_build": memory()}
        result["devices_used"] = sorted(set(mapping.values()))
        result.update(panes(lm, steer_layers, args.tokens, args.repeats, args.smoke))
        result["memory_after_generation"] = memory()
        del lm, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
        return result

    section("fp16_two_gpus", fp16_split)

    def nf4_one_gpu() -> dict[str, Any]:
        start = time.perf_counter()
        model = build_4bit(config, devices[0])
        built = time.perf_counter() - start
        lm = loaded(model, config, devices[0], "4-bit nf4", "random-llama-2-70b-shape-nf4", None)
        result = {"build_s": built, "memory_after_build": memory()}
        result.update(panes(lm, steer_layers, max(args.tokens // 2, 4), max(args.repeats - 1, 1), args.smoke))
        result["memory_after_generation"] = memory()
        return result

    if not args.skip_4bit:
        section("nf4_one_gpu", nf4_one_gpu)
    return 0 if all(v.get("ok", True) for v in report.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
