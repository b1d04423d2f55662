"""Using a trained model: transcription and evaluation through PyTorch or onnxruntime, live streaming, and
the export to ONNX."""
