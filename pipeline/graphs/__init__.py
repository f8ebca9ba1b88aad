"""Graph assembly: the options, and the batch and streaming graphs built from them (never run)."""
