"""Export: checkpoint -> one fused, self-verifying ONNX graph (fp32/fp16/int8) -> TensorRT engine."""
