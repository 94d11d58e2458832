"""LLaMA Steering: Contrastive Activation Addition (CAA) for chat language models."""

from steering.errors import SteeringError

__all__ = ["SteeringError"]
__version__ = "0.1.0"
