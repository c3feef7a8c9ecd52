"""Small molecules: SELFIES tokens, RDKit properties, molecule metrics (extra `[chem]`)."""
