"""Training and evaluation runs: the loop, the sample order, distributed set-up, the paper's protocol."""
