"""Foundations: config, errors, atomic I/O, optional extras, alphabets, sequence files, numerics.

This package imports nothing else of vidd; every other package may import it."""
