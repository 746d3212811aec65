"""Model files for use outside vaekit: safetensors and ONNX (export.py)."""
