"""onepane: one pane of glass over every cloud and data center."""

__version__ = "0.1.0"
