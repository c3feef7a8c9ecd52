"""vidd's version (recorded in every model folder and in a fine-tuned model's provenance)."""

__version__ = "0.1.0"
