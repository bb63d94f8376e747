"""digest: trending research papers, filtered per subscriber, by email and Atom/RSS."""

__version__ = "0.1.0"
