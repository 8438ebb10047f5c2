"""The batched stream quantizer against one vector-quantize-pytorch module per stream and level (not a test).

    PYTHONPATH=. python bench/quantizer.py TOKENIZER_DIR [--rows 64] [--threads 1]

Builds, for the streams, latent width and codebook sizes of a fitted tokenizer (``tokenizer.json``), both
quantizers with the same initial codes, and times side by side in one run, per training step of
``--rows`` rows: the quantizers alone (assignment, codes, commitment losses, EMA update and dead-code
check: what the library did per call), then a whole training step of the model (forward of every level
prefix, backward, AdamW) as the tokenizer trains it now. Prints milliseconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from vector_quantize_pytorch import VectorQuantize

from spinlock.encoding.model import ModelSpec
from spinlock.encoding.quantizer import StreamQuantizer
from spinlock.encoding.training import TrainSettings, build_model, loss_terms


def per_call_ms(f, repeats: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tokenizer", type=Path)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = ModelSpec.from_json(json.loads((args.tokenizer / "tokenizer.json").read_text())["spec"])
    E, L, B = spec.n_encoders, spec.latent_dim, args.rows
    g = torch.Generator().manual_seed(0)

    batched = StreamQuantizer(L, spec.encoder_codebook_sizes, spec.ema_decay, spec.commitment_weight).train()
    library = []
    for e, sizes in enumerate(spec.encoder_codebook_sizes):
        layers = []
        for lv, k in enumerate(sizes):
            codes = torch.randn(k, L, generator=g)
            batched.levels[lv].set_codes(e, codes, torch.full((k,), B / k))
            vq = VectorQuantize(dim=L, codebook_size=k, decay=spec.ema_decay, commitment_weight=spec.commitment_weight,
                                kmeans_init=False, threshold_ema_dead_code=0.5 * B / k).train()
            vq._codebook.embed.data.copy_(codes[None])
            layers.append(vq)
        library.append(layers)
    z = torch.randn(E, B, L, generator=g)

    def library_step():
        for e, layers in enumerate(library):
            residual = z[e]
            for vq in layers:
                q, _, _ = vq(residual[:, None, :])
                residual = residual - q[:, 0].detach()

    lib_ms = per_call_ms(library_step, args.repeats)
    ours_ms = per_call_ms(lambda: batched(z), args.repeats)

    model = build_model(spec, 0).train()
    x = torch.randn(B, spec.n_features, generator=g)
    t = torch.randn(B, spec.temporal_length, spec.temporal_features, generator=g) if spec.temporal_features else None
    ic = (torch.randn(B, spec.ic_channels, spec.ic_resolution, spec.ic_resolution, generator=g)
          if spec.ic_channels else None)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)  # as spinlock.encoding.training
    settings = TrainSettings(1, 1e-4, 0.0, 1.0, 0.5, B, 0)

    def train_step():
        out = model(x, t, ic)
        loss = loss_terms(out, {"x": x, "temporal": t}, settings)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step_ms = per_call_ms(train_step, args.repeats)
    print(f"{E} streams of {L} dimensions, {B} rows, {args.threads} thread(s)")
    print(f"quantizers, one step: vector-quantize-pytorch {lib_ms:.1f} ms ({3 * E} calls), batched {ours_ms:.1f} ms:"
          f" {lib_ms / ours_ms:.1f}x")
    print(f"training step of the model (batched quantizer): {step_ms:.1f} ms")


if __name__ == "__main__":
    main()
