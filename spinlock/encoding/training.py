"""The VQ-VAE training loop as a plain function (no Ray): Ray Train wraps it, tests call it directly.

Reproducibility: the model is built under a forked global torch RNG seeded from
``derive_key(seed, "tokenizer.init")`` (torch module init, the codebooks' k-means and
dead-code sampling draw from the global generator, so it is scoped, never left modified); every epoch
re-seeds it from ``(seed, epoch, rank)``. Deterministic algorithms are switched on for the loop's duration only. So a
run resumed from an epoch checkpoint (model, optimizer, history) continues exactly as if it had not
been interrupted, given the same batches.

Model selection: when validation rows exist, the final weights are those of the epoch with the best
:func:`validation_score`, and training stops once ``patience`` epochs in a row have not improved it.
Why: the PCA-initialised model is near its best after a few epochs on small runs (the quickstart's
validation R² peaks at epoch 1 and then drifts down as the 207 training rows are overfitted), while
large runs keep improving for tens of epochs; a fixed epoch count is either too short for one or
wasted time and quality for the other.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from spinlock.encoding.metrics import evaluate
from spinlock.encoding.model import HierarchicalVQVAE, ModelOutput, ModelSpec
from spinlock.encoding.quantizer import world_size
from spinlock.rng import derive_key

Batch = dict[str, torch.Tensor]
"""Cleaned inputs: ``x`` [B, D'], optional ``temporal`` [B, T', Dt'] and ``ic`` [B, C, R, R]."""


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    learning_rate: float
    weight_decay: float
    temporal_weight: float
    ic_weight: float
    kmeans_init_rows: int
    seed: int
    family_columns: dict[str, list[int]] = field(default_factory=dict)
    """Cleaned column indices of each scalar family, for per-family validation R²."""
    scalar_lr_scale: float = 1.0
    """Learning rate of the scalar-feature path (category encoders, scalar output head) relative to the
    rest (:func:`parameter_groups`)."""
    lr_schedule: str = "cosine"
    """``cosine``: the learning rate of epoch e is ``learning_rate · (1 + cos(π e / epochs)) / 2``;
    ``constant``: always ``learning_rate`` (see :func:`epoch_learning_rate`)."""
    patience: int = 0
    """Stop after this many epochs in a row without a better :func:`validation_score` (0: run every
    epoch). Needs validation rows; the best epoch's weights are kept either way."""


def epoch_learning_rate(settings: TrainSettings, epoch: int) -> float:
    """Learning rate of ``epoch`` (a function of the epoch alone, so resuming needs no scheduler state).

    Why cosine: the EMA codebooks are online k-means over the encoder outputs; while the encoders
    move (Adam steps of ~lr whatever the gradient size, so small encoders drift most) codes are left
    behind and die. Annealing to ~0 lets the latents settle, so the last epochs converge the codebooks
    (and the reconstruction) instead of chasing a moving target.
    """
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    if settings.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {settings.lr_schedule!r}")
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / max(settings.epochs, 1)))


def validation_score(record: dict, settings: TrainSettings) -> float | None:
    """The epoch's model-selection score: the validation R² of every family the model reconstructs,
    weighted as in the loss (scalar features 1, temporal curves ``temporal_weight``, IC statistics
    ``ic_weight``), each averaged over the three level prefixes (coarse, +medium, all) so a better full
    code never hides a worse truncated one. Why all families: the scalar R² alone peaks before the
    temporal and IC streams have learned anything (the quickstart's at epoch 1, where the temporal R²
    is -0.2 and the IC codes have collapsed). None without validation."""
    val = record.get("validation")
    if not val:
        return None
    weights = {"all": 1.0, "temporal": settings.temporal_weight, "ic": settings.ic_weight}
    parts = [(w, sum(val["r2"][g]) / len(val["r2"][g])) for g, w in weights.items() if g in val["r2"] and w > 0]
    return float(sum(w * r for w, r in parts) / sum(w for w, _ in parts))


@dataclass
class TrainState:
    """Everything needed to continue training after ``epoch`` epochs (what a checkpoint holds).

    ``model_state`` is the latest epoch's (training continues from it); ``best_epoch`` /
    ``best_model_state`` the epoch with the best :func:`validation_score` so far (None without
    validation); ``stopped``: patience ran out, no further epoch is trained.
    """

    epoch: int
    model_state: dict
    optimizer_state: dict
    history: list[dict]
    best_epoch: int | None = None
    best_model_state: dict | None = None
    stopped: bool = False

    @property
    def final_model_state(self) -> dict:
        """The weights the tokenizer keeps: the best epoch's, else the latest."""
        return self.best_model_state if self.best_model_state is not None else self.model_state

    @property
    def final_record(self) -> dict:
        """The history record of the epoch whose weights are kept ({} before any epoch)."""
        if not self.history:
            return {}
        return self.history[self.best_epoch] if self.best_epoch is not None else self.history[-1]

    def save(self, path: str | Path) -> None:
        torch.save({"epoch": self.epoch, "model": self.model_state, "optimizer": self.optimizer_state,
                    "history": json.dumps(self.history), "best_epoch": self.best_epoch,
                    "best_model": self.best_model_state, "stopped": self.stopped}, path)

    @classmethod
    def load(cls, path: str | Path) -> TrainState:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return cls(int(d["epoch"]), d["model"], d["optimizer"], json.loads(d["history"]), d.get("best_epoch"),
                   d.get("best_model"), bool(d.get("stopped", False)))


@contextlib.contextmanager
def seeded_torch(seed: int, stream: str, *counters: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded from a derived key, restoring it afterwards."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_key(seed, stream, *counters))
        yield


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block (warn-only on CUDA), then restore."""
    previous, previous_warn = (torch.are_deterministic_algorithms_enabled(),
                               torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


SCALAR_PATH = ("category_encoders.", "category_linear.", "head_x.")


def parameter_groups(model: HierarchicalVQVAE, scalar_scale: float) -> list[dict]:
    """AdamW parameter groups, each with its ``lr_scale`` (times the epoch's learning rate): the scalar-feature
    path (category encoders and the scalar output head, :data:`SCALAR_PATH`) at ``scalar_scale``, the rest at 1.

    Why: the scalar path starts from the per-category PCA code, which k-means++ quantizes better than
    training at the full rate keeps it (Adam moves every weight by ~lr per step, and the finer levels'
    codes hold residuals a few hundredths of the features' variance wide); the IC branch and the decoder's
    MLP start from random weights and need the full rate, and so does the temporal stream although it
    starts from the curves' PCA too (quickstart curves' R² 0.724 at the full rate, 0.59 at 0.03×;
    docs/tokenizer.md, "Initialisation from the PCA solution")."""
    scalar = [p for n, p in model.named_parameters() if n.startswith(SCALAR_PATH)]
    ids = {id(p) for p in scalar}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [g for g in ({"params": rest, "lr_scale": 1.0}, {"params": scalar, "lr_scale": scalar_scale})
            if g["params"]]


def build_model(spec: ModelSpec, seed: int) -> HierarchicalVQVAE:
    """The model with weights drawn from ``(seed, "tokenizer.init")`` (identical on every rank)."""
    with seeded_torch(seed, "tokenizer.init"):
        return HierarchicalVQVAE(spec)


def loss_terms(out: ModelOutput, batch: Batch, settings: TrainSettings) -> dict[str, torch.Tensor]:
    """Scalar-feature MSE, temporal MSE, IC-statistics MSE, commitment; ``total`` is their weighted sum.

    The reconstructions carry a leading level axis in training (every prefix of the levels), so each
    MSE is the mean over the three prefixes."""
    terms = {"recon": torch.mean((out.x - batch["x"]) ** 2), "commit": out.commit_loss}
    total = terms["recon"] + terms["commit"]
    if out.temporal is not None:
        terms["temporal"] = torch.mean((out.temporal - batch["temporal"]) ** 2)
        total = total + settings.temporal_weight * terms["temporal"]
    if out.ic is not None:
        terms["ic"] = torch.mean((out.ic - out.ic_target) ** 2)
        total = total + settings.ic_weight * terms["ic"]
    terms["total"] = total
    return terms


def _codebooks_initialized(model: HierarchicalVQVAE) -> bool:
    return all(bool(level.initted) for level in model.quantizer.levels)


def _cat(batches: list[Batch]) -> Batch:
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def _with_init(model: HierarchicalVQVAE, batches: Iterable[Batch], rows: int) -> Iterator[Batch]:
    """Yield ``batches``; before the first one, k-means-initialise the codebooks from >= ``rows`` rows.

    Every DDP rank holds the same number of equal-size batches, so all ranks reach the (collective)
    initialisation at the same step.
    """
    it = iter(batches)
    buffered: list[Batch] = []
    n = 0
    for b in it:
        buffered.append(b)
        n += b["x"].shape[0]
        if n >= rows:
            break
    if buffered:
        init = _cat(buffered)
        step_rows = buffered[0]["x"].shape[0]
        model.set_step_rows(step_rows * world_size())
        model.initialize_codebooks(init["x"], init.get("temporal"), init.get("ic"), step_rows=step_rows)
    yield from buffered
    yield from it


def train_model(
    model: HierarchicalVQVAE,
    settings: TrainSettings,
    train_batches: Callable[[int], Iterable[Batch]],
    validation_batches: Callable[[int], Iterable[Batch]] | None,
    *,
    start: TrainState | None = None,
    on_epoch_end: Callable[[TrainState, dict], None] | None = None,
    wrapped: nn.Module | None = None,
    rank: int = 0,
) -> TrainState:
    """Train ``model`` for ``settings.epochs`` epochs, or until ``settings.patience`` epochs without a
    better validation score (continuing from ``start`` if given).

    ``train_batches(epoch)`` yields this rank's batches of an epoch; ``wrapped`` is the DDP wrapper
    of ``model`` (training forwards go through it, evaluation uses ``model`` itself);
    ``validation_batches(epoch)`` — None on ranks that do not evaluate (rank 0 decides when to stop and
    tells the others). ``on_epoch_end(state, record)`` runs after every epoch (checkpoint + report under
    Ray). Returns the final state (its :attr:`TrainState.final_model_state` is the kept weights).
    """
    net = wrapped if wrapped is not None else model
    # fused: one kernel for all parameters instead of one per tensor (quickstart step, one thread: AdamW
    # 9.1 -> 2.8 ms of 66 ms; docs/performance.md, "Tokenizer step")
    optimizer = torch.optim.AdamW(parameter_groups(model, settings.scalar_lr_scale), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay, fused=True)
    history: list[dict] = []
    first = 0
    best: tuple[int, float, dict] | None = None  # (epoch, score, weights)
    if start is not None:
        model.load_state_dict(start.model_state)
        optimizer.load_state_dict(start.optimizer_state)
        history, first = list(start.history), start.epoch
        if start.best_epoch is not None and start.best_model_state is not None:
            best = (start.best_epoch, validation_score(history[start.best_epoch], settings) or 0.0,
                    start.best_model_state)
        if start.stopped:
            return start
    state = start
    with deterministic_algorithms():
        for epoch in range(first, settings.epochs):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            rows = 0
            lr = epoch_learning_rate(settings, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with seeded_torch(settings.seed, "tokenizer.epoch", epoch, rank):
                model.train()
                batches = train_batches(epoch)
                if not _codebooks_initialized(model):
                    batches = _with_init(model, batches, settings.kmeans_init_rows)
                for step, batch in enumerate(batches):
                    if step == 0:  # dead-code thresholds follow the step size (also after a resume)
                        model.set_step_rows(batch["x"].shape[0] * world_size())
                    out = net(batch["x"], batch.get("temporal"), batch.get("ic"))
                    terms = loss_terms(out, batch, settings)
                    optimizer.zero_grad(set_to_none=True)
                    terms["total"].backward()
                    optimizer.step()
                    n = batch["x"].shape[0]
                    rows += n
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            record: dict = {"epoch": epoch, "attempt_start_epoch": first, "learning_rate": lr, "train_rows": rows,
                            "train_seconds": time.perf_counter() - t0}
            record.update({f"train_{k}": v / max(rows, 1) for k, v in sums.items()})
            if validation_batches is not None:
                record["validation"] = evaluate(model, validation_batches(epoch), settings.family_columns)
            history.append(record)
            state = _snapshot(epoch + 1, model, optimizer, history)
            score = validation_score(record, settings)
            if score is not None and (best is None or score > best[1]):
                best = (epoch, score, state.model_state)
            if best is not None:
                state.best_epoch, state.best_model_state = best[0], best[2]
            stop = settings.patience > 0 and best is not None and epoch - best[0] >= settings.patience
            if world_size() > 1:  # only rank 0 validates: every rank follows its decision
                flag = torch.tensor([int(stop)], device=next(model.parameters()).device)
                dist.broadcast(flag, src=0)
                stop = bool(flag.item())
            state.stopped = stop and epoch + 1 < settings.epochs
            if on_epoch_end is not None:
                on_epoch_end(state, record)
            if state.stopped:
                break
    if state is None:  # nothing left to train: return the starting point as the final state
        state = _snapshot(first, model, optimizer, history)
    return state


def _snapshot(epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[dict]) -> TrainState:
    """A TrainState holding copies (state_dict() aliases the live parameters), on the CPU."""
    model_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return TrainState(epoch, model_state, copy.deepcopy(optimizer.state_dict()), list(history))


def epoch_line(record: dict, epochs: int) -> str:
    """One human-readable line per epoch (the stage's progress log)."""
    line = (f"epoch {record['epoch'] + 1}/{epochs}: loss {record.get('train_total', float('nan')):.4f}"
            f" (features {record.get('train_recon', float('nan')):.4f}), {record['train_seconds']:.1f} s")
    val = record.get("validation")
    if val:
        r2 = "/".join(f"{v:.3f}" for v in val["r2"]["all"])
        usage = "/".join(f"{v:.2f}" for v in val["codebook_usage"])
        line += f"; validation R² {r2} (coarse/+medium/all), codebook usage {usage}"
    return line


def flat_metrics(record: dict) -> dict[str, float]:
    """One epoch record as flat ``name: number`` pairs (for Ray Train's report and logs)."""
    out = {k: v for k, v in record.items() if isinstance(v, int | float)}
    val = record.get("validation")
    if val:
        for group, values in val["r2"].items():
            for lv, v in enumerate(values, start=1):
                out[f"val_r2_{group}_l{lv}"] = v
        for lv in range(3):
            out[f"usage_l{lv + 1}"] = val["codebook_usage"][lv]  # the names plot_codebook_training draws
            out[f"perplexity_l{lv + 1}"] = val["perplexity"][lv]
    return out
