"""fwrd: FW-RD (focal-weighted reverse distillation) for lymph-node metastasis detection in H&E slides.

Train a model (`fwrd.training`), export it to one fused ONNX graph or a TensorRT engine (`fwrd.export`),
stream whole slides through it without torch (`fwrd.runtime`, `fwrd.slide`) and score the result the
way Camelyon16 did (`fwrd.evaluation`).
"""

__version__ = "0.1.0"
