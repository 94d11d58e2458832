"""Models without a download, for the GPU benchmark (`bench --synthetic-7b`), scripts/gpu_*.py and the tests:
a byte-level chat tokenizer, Llama shapes (Llama-2-7B, Llama-2-70B, a tiny one) and random-weight models of them.

Not part of the public API (steering.__all__).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# torch, transformers and tokenizers are imported inside the functions: steering.cli.bench imports this module
# (the shapes), and `steering bench --help` stays without them.


def make_byte_tokenizer() -> Any:
    """A byte-level chat tokenizer: one token per byte, a simple <|role|>...<|end|> template.

    Enough for anything that only formats chats (random-weight models need no real vocabulary).

    Returns:
        A transformers PreTrainedTokenizerFast of 256 byte tokens plus <|end|> (EOS), <pad> and three role
        tokens, with a chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens(
        {
            "eos_token": "<|end|>",
            "pad_token": "<pad>",
            "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"],
        }
    )
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


@dataclass(frozen=True)
class LlamaShape:
    """The shape of a Llama-architecture model (what transformers' LlamaConfig needs for random weights).

    Attributes:
        layers: decoder blocks (num_hidden_layers).
        hidden: residual stream width (hidden_size).
        mlp: MLP inner width (intermediate_size).
        heads: attention heads (num_attention_heads); hidden must be a multiple of it.
        kv_heads: key/value heads (num_key_value_heads; fewer than heads = grouped-query attention).
        vocab: vocabulary size in tokens.
        context: longest sequence in tokens (max_position_embeddings).
        norm_eps: RMSNorm epsilon (rms_norm_eps).
    """

    layers: int
    hidden: int
    mlp: int
    heads: int
    kv_heads: int
    vocab: int = 32000
    context: int = 4096
    norm_eps: float = 1e-5


# Llama-2-7B (Touvron et al. 2023, arXiv 2307.09288, Table 1 / the released config): untied embeddings.
LLAMA2_7B = LlamaShape(layers=32, hidden=4096, mlp=11008, heads=32, kv_heads=32)
# Llama-2-70B: grouped-query attention with 8 key/value heads.
LLAMA2_70B = LlamaShape(layers=80, hidden=8192, mlp=28672, heads=64, kv_heads=8)
# The 7B layout shrunk to run on a CPU in a moment: checks code paths (smoke runs, tests), not speed.
TINY = LlamaShape(layers=4, hidden=64, mlp=128, heads=4, kv_heads=4, vocab=512)


def llama_config(shape: LlamaShape = LLAMA2_7B) -> Any:
    """A transformers LlamaConfig of `shape` with untied embeddings.

    Args:
        shape: the model's shape (LLAMA2_7B, LLAMA2_70B, TINY, or `dataclasses.replace` of one).

    Returns:
        transformers.LlamaConfig.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.mlp,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.context,
        rms_norm_eps=shape.norm_eps,
        tie_word_embeddings=False,
    )


def random_llama(shape: LlamaShape, device: Any = "cpu", dtype: Any = None, seed: int = 0) -> Any:
    """A LlamaForCausalLM of `shape` with random weights (transformers' initialisation, seeded), in eval mode,
    without gradients, that never stops early (no EOS id: generated lengths are exactly what was asked).

    Args:
        shape: the model's shape.
        device: where the weights are created (a torch device or its name).
        dtype: the weights' torch dtype (default: float32).
        seed: torch.manual_seed before the weights are drawn (the same seed and shape give the same model).

    Returns:
        transformers.LlamaForCausalLM; its config is llama_config(shape).
    """
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape)).to(dtype or torch.float32).eval()
    model.requires_grad_(False)
    model.config.eos_token_id = None
    model.generation_config.eos_token_id = None
    return model
