"""The solver-neutral program IR (:mod:`.program`), the builder that writes expressions, ReLUs and
bilinear products into it (:mod:`.encoder`), and the helpers threats use to encode their
perturbation sets (:mod:`.inputs`). Knows nothing of torch models, threats or solvers."""
