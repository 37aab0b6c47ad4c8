"""The experimentation control plane: plan, generate, validate (the gate) and change experiments
through the store every serving process follows (``serving.experiments.store``)."""
