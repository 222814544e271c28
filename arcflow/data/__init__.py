"""Prompt datasets: prompt text files, cached prompt embeddings, aspect-ratio buckets, and
captioned images pre-encoded by a VAE."""
