"""Sound steps of SGD computed directly in torch (no solver): the interval step of
:mod:`.interval`, which every bounder starts from."""
