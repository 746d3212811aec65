"""Evaluating a trained model: the likelihood bound and the evaluation record (bound.py), the
feature distances (metrics.py) and the sample quality built on them (quality.py) with their
feature networks (classifier.py, inception.py), per-image scores for out-of-distribution
detection (scores.py) and latents (latents.py). Import the modules themselves."""
