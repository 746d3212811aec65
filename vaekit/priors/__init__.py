"""Priors p(z) as parts: the standard normal, priors fitted to a trained model's codes after
training, and priors learned with the model. Every one implements vaekit.priors.base.Prior."""
