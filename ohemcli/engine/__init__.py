"""Training: the loop, one step, hnm's mining pass, the optimizer, DDP, bench, pretraining."""
