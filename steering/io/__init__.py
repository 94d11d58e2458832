"""Vector files: safetensors / .pt / GGUF reading and writing, atomic file writes."""
