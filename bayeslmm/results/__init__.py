"""What users hold: LMMResult (REML/ML) and BayesResult (NUTS), one API for both, and their reports."""
