"""Training FW-RD: patch extraction from annotated slides, the focal-distillation loss, the trainer."""
