"""Tools that turn OrcaHello checkpoints into this repository's Transformers model folder (never bundled weights)."""
