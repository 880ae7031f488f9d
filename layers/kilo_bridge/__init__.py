"""Kilo Bridge: the Kilo Gateway and Kilo agents behind one small, safe HTTP API."""

__version__ = "0.1.0"
