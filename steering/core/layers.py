"""Finding the decoder blocks of a causal LM (the layers whose outputs CAA reads and steers)."""

from __future__ import annotations

from torch import nn

from steering.errors import SteeringError

# Attribute paths of the decoder block list in common architectures (Llama first).
_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (e.g. `model.model.layers` for Llama), whose outputs are steered.

    Args:
        model: a transformers causal LM (or its base model).

    Returns:
        The non-empty nn.ModuleList of blocks; block i's output is the residual stream after layer i.

    Raises:
        SteeringError: none of the known attribute paths holds the blocks (an unsupported architecture).
    """
    for path in _LAYER_PATHS:
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise SteeringError(
        f"cannot find the decoder layers of {type(model).__name__} (looked for {', '.join(_LAYER_PATHS)})"
    )


def check_layer(layer: int, num_layers: int) -> int:
    """Return `layer` when it is a valid block index (0..num_layers - 1).

    Raises:
        SteeringError: the layer is out of range (the message gives the model's range).
    """
    if not 0 <= layer < num_layers:
        raise SteeringError(f"layer {layer} is out of range: the model has layers 0..{num_layers - 1}")
    return layer
