"""recnarr: personalized, grounded product recommendation narratives from a small GPT."""

__version__ = "0.1.0"
