"""Core pieces of contrastive activation addition: decoder-layer lookup, steering hooks, activation
recording, chat prompts, A/B datasets, request limits, recipes, mixing and behavior cards."""
