"""Generation: the decode loop, the CUDA-graph/compiled fast path, the continuous-batching scheduler."""
