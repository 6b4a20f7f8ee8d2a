"""The accuracy gates live in `fwrd.evaluation.gate`, a floor below, because the runtime scores a model's
verification tiles at load against them too (fwrd.runtime.self_test); the export's names stay here."""

from fwrd.evaluation.gate import (  # noqa: F401  (re-exported)
    GATES,
    NEXT_STEPS,
    Gate,
    VerificationSet,
    VerifyReport,
    compare_scores,
    enforce,
    flipped_calls,
    verification_path,
)
