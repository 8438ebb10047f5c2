"""Ray edges of the stage cores.

Generation: :mod:`.driver` (``generate``: plan, resume, pool, merge), :mod:`.scheduler` (dispatch and
bounded retries), :mod:`.worker` (the shard actor), :mod:`.cluster` (connect, pool sizing),
:mod:`.metrics` (dashboard metrics). Tokenizer: :mod:`.tokenize_stage` (the tokenize and encode
stages), :mod:`.feature_stream` (Ray Data), :mod:`.train` (Ray Train).
Import the submodules directly; importing this package does not import Ray.
"""
