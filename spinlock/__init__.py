"""Spinlock: stratified neural-operator behaviour datasets and behavioural tokens on Ray."""

__version__ = "0.1.0"
FORMAT_VERSION = "1.0"
