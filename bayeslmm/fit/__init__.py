"""REML / ML: the optimiser over θ (optimize), with a residual structure (residual), what it did
(optsum), and the fit as data (state)."""
