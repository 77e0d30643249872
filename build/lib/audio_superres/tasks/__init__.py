"""What the entry points do: train.py, evaluate.py, upsample.py and the filter-mismatch study."""
