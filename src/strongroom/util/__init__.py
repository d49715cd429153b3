"""Small generic helpers every layer may use; a leaf that imports nothing of Strongroom but its errors and
vocabulary."""
