"""What training minimises and evaluation reports: the loss (Eq. 3) and the per-exposure-bin metrics."""
