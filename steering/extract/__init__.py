"""Building steering vectors: mean-difference extraction (CAA), importing the paper's files, vectors on first use."""
