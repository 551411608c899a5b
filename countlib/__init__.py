"""countlib: length generalisation of counting, after Chang & Bisk (ICLR 2025)."""

__version__ = "0.1.0"
