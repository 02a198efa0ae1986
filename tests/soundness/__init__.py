"""End-to-end soundness: certified training on clean data, concrete (plain torch) training on
poisoned data drawn from the threat model, every reached parameter inside the certified box."""
