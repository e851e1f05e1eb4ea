"""The one exception type users see for bad input."""


class LMMError(ValueError):
    """Bad input to a bayeslmm model: the message says what is wrong and what would be right."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before the gradient of the deviance was small enough."""


class SingularFitWarning(UserWarning):
    """A variance component is estimated as zero or a correlation as ±1 (lme4's boundary (singular) fit)."""


class SamplerFallbackWarning(UserWarning):
    """The compiled kernel does not cover this model yet, so PyMC's NUTS samples it (slower, same posterior)."""
