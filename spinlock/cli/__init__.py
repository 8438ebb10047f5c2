"""The command modules import the library inside their functions on purpose: ``spinlock --help``, ``--version``
and a mistyped argument then load neither torch nor Ray."""
