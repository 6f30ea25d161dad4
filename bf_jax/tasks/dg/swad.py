"""SWAD: dense weight averaging over the validation-loss valley (Cha et al., NeurIPS 2021,
"SWAD: Domain Generalization by Seeking Flat Minima", Sec. 3.3 and Algorithm 1).

Training evaluates the validation loss ``L_i`` every ``eval_every`` steps (evaluation index
``i = 0, 1, 2, ...``). With ``N_s = n_converge``, ``N_e = n_tolerance`` and
``r = 1 + tolerance_ratio``:

- start ``t_s``: the first ``i`` with ``L_i = min(L_i, ..., L_{i+N_s-1})``: the loss has stopped
  decreasing (ties count: a flat stretch starts the window).
- end ``t_e``: the first ``i > t_s`` with ``min(L_i, ..., L_{i+N_e-1}) > r * L_{t_s}``: the loss
  has stayed above the valley's threshold for ``N_e`` evaluations in a row (shorter excursions
  are tolerated).

Both need their whole look-ahead window: with fewer evaluations left, the index is not reached.

Segments and the window. Segment ``k`` is the training steps between evaluation ``k - 1`` and
evaluation ``k`` (segment 0: the steps before evaluation 0), i.e. the ``add_step`` calls after
the ``k``-th ``end_segment`` call and up to the ``(k+1)``-th. ``L_k`` is measured on the
weights at the end of segment ``k``, so segment ``k`` is the one that ``L_k`` judges. SWAD's
model is the uniform average of the weights of every step ("dense", not one sample per
evaluation) of segments ``t_s, t_s + 1, ..., t_e - 1``: segment ``t_s`` ends at the point
flagged as converged, and segment ``t_e`` is the first whose end (and the ``N_e - 1`` ends after
it) lies above the threshold, so it is left out. In a loop that calls ``add_step`` after every
optimizer update (steps ``1, 2, ...``) and ``end_segment`` after steps ``E, 2E, ...``
(evaluating the params just added), the window is steps ``t_s * E + 1`` to ``t_e * E``.

End of training (``averaged()`` with ``final=True``, the default, treats "now" as the end):

- ``t_s`` found, ``t_e`` not: the average runs up to the last step: segments ``t_s`` onward,
  including the undecided ones and the steps after the last evaluation, as the definition of
  ``t_e`` on the complete curve has no end.
- ``t_s`` never found (fewer than ``N_s`` evaluations, or a loss that kept decreasing): the
  average of every step after the first evaluation (segments ``1, 2, ...`` and the steps after
  the last evaluation). Segment 0 is left out as the weights of early training, farthest from
  any minimum.

Online bookkeeping. ``t_s`` and ``t_e`` are only known ``N_s - 1`` and ``N_e - 1`` evaluations
later, so each closed segment is kept as (running sum of its steps' weights, step count, loss)
in a queue until it is decided, then either committed to one running total or dropped. Sums
are in float32 (float64 for float64 weights) whatever the weights' dtype, so the average of
thousands of bf16 steps does not round away; ``averaged`` returns that dtype.

Memory bound: at most ``max(N_s, N_e) + 1`` weight-sized sums are held at any time (the open
segment, the queue and the total), plus one transient copy while a jitted add runs. While
``t_s`` is unknown, the queue holds at most ``N_s - 1`` segments between calls and the total
holds the fallback's sum of the dropped segments 1, 2, ...; afterwards the queue holds at most
``N_e - 1`` segments (the current run of evaluations above the threshold) and the total holds
the committed window.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp


def _check_hparams(n_converge: int, n_tolerance: int, tolerance_ratio: float) -> None:
  for name, value in (("n_converge", n_converge), ("n_tolerance", n_tolerance)):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
      raise ValueError(f"swad: {name}={value!r} must be an integer >= 1 (SWAD's default is "
                       f"{3 if name == 'n_converge' else 6}); pass e.g. {name}=1 or more.")
  if (isinstance(tolerance_ratio, bool) or not isinstance(tolerance_ratio, numbers.Real)
      or not math.isfinite(tolerance_ratio) or tolerance_ratio < 0):
    raise ValueError(f"swad: tolerance_ratio={tolerance_ratio!r} must be a finite number >= 0 "
                     f"(the window ends once the loss exceeds (1 + tolerance_ratio) times its "
                     f"value at the start; SWAD's default is 0.3).")


def _check_loss(val_loss: float, index: int) -> float:
  try:
    loss = float(val_loss)
  except (TypeError, ValueError):
    raise ValueError(f"swad: the validation loss at evaluation {index} is {val_loss!r}, not a "
                     f"number; pass the scalar loss (e.g. float(metrics['loss'])).") from None
  if not math.isfinite(loss):
    raise ValueError(f"swad: the validation loss at evaluation {index} is {loss}, not finite; "
                     f"SWAD's window is defined by finite losses: fix the evaluation (a "
                     f"diverged model or an empty validation set) before averaging.")
  return loss


def swad_window(val_losses: Sequence[float], n_converge: int = 3, n_tolerance: int = 6,
                tolerance_ratio: float = 0.3) -> tuple[int | None, int | None]:
  """(t_s, t_e) evaluation indices as defined in the module docstring for a complete loss
  curve; None where not reached (t_e is None whenever t_s is)."""
  _check_hparams(n_converge, n_tolerance, tolerance_ratio)
  losses = [_check_loss(v, i) for i, v in enumerate(val_losses)]
  n = len(losses)
  t_s = next((i for i in range(n - n_converge + 1)
              if losses[i] <= min(losses[i:i + n_converge])), None)
  if t_s is None:
    return None, None
  threshold = (1.0 + tolerance_ratio) * losses[t_s]
  t_e = next((i for i in range(t_s + 1, n - n_tolerance + 1)
              if min(losses[i:i + n_tolerance]) > threshold), None)
  return t_s, t_e


def _acc_dtype(x: jax.Array) -> jnp.dtype:
  return jnp.promote_types(x.dtype, jnp.float32)


# The sums must own their buffers: a training step that donates its state deletes the caller's
# params. The "+ 0" keeps a same-dtype astype from being an output that is the input unchanged,
# which JAX may forward instead of copying (this version copies; the add costs nothing).
_start_sum = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(_acc_dtype(x)) + 0, p))
_add_to_sum = jax.jit(lambda s, p: jax.tree.map(lambda a, x: a + x.astype(a.dtype), s, p))
_scale = jax.jit(lambda s, c: jax.tree.map(lambda a: a / c.astype(a.dtype), s))


class _Segment:
  """One closed evaluation segment: the sum of its steps' weights (None if it had no step)."""

  __slots__ = ("index", "loss", "sum", "count")

  def __init__(self, index: int, loss: float, sum_: Any, count: int):
    self.index, self.loss, self.sum, self.count = index, loss, sum_, count


class SwadAverager:
  """Online dense weight averaging over SWAD's window (definitions in the module docstring).

  Per training step call ``add_step(params)``; after each evaluation ``end_segment(val_loss)``;
  at the end ``averaged()``. Host-side bookkeeping around jitted tree adds: the sums follow the
  params' sharding, and no step blocks on the device.
  """

  def __init__(self, n_converge: int = 3, n_tolerance: int = 6, tolerance_ratio: float = 0.3):
    _check_hparams(n_converge, n_tolerance, tolerance_ratio)
    self.n_converge, self.n_tolerance = int(n_converge), int(n_tolerance)
    self.tolerance_ratio = float(tolerance_ratio)
    self._treedef = None
    self._n_evals = 0               # index of the next evaluation
    self._t_s: int | None = None
    self._t_e: int | None = None
    self._t_s_loss = 0.0            # L_{t_s}, once t_s is known
    self._open_sum: Any = None      # the current (not yet evaluated) segment
    self._open_count = 0
    self._queue: list[_Segment] = []
    self._total_sum: Any = None     # committed window, or the fallback's sum before t_s
    self._total_count = 0
    self.peak_held_sums = 0         # the most sums held at once, for checking the bound

  # -- what the loop calls ---------------------------------------------------------------------

  def add_step(self, params: Any) -> None:
    """Adds one step's weights to the current segment; ignored once ``done``."""
    if self.done:
      return
    treedef = jax.tree.structure(params)
    if self._treedef is None:
      for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
          raise ValueError(f"swad: leaf {jax.tree_util.keystr(path)} has dtype "
                           f"{jnp.result_type(leaf)}; SWAD averages floating-point weights: "
                           f"pass only the trainable params.")
      self._treedef = treedef
    elif treedef != self._treedef:
      raise ValueError(f"swad: add_step got params with structure {treedef}, but earlier steps "
                       f"(or the restored state) had {self._treedef}; pass the same params tree "
                       f"every step (restore the state_dict with the params as its target).")
    self._open_sum = (_start_sum(params) if self._open_sum is None
                      else _add_to_sum(self._open_sum, params))
    self._open_count += 1
    self._note_held()

  def end_segment(self, val_loss: float) -> None:
    """Closes the current segment with the loss of evaluation ``n_evals`` and commits or drops
    every segment that this loss decides."""
    index = self._n_evals
    loss = _check_loss(val_loss, index)
    self._n_evals += 1
    if self.done:
      return
    # The open sum moves into the queue (no copy), so the held count does not grow here.
    self._queue.append(_Segment(index, loss, self._open_sum, self._open_count))
    self._open_sum, self._open_count = None, 0
    self._note_held()
    if self._t_s is None:
      self._seek_start()
    if self._t_s is not None:
      self._seek_end()
    self._note_held()

  @property
  def done(self) -> bool:
    """t_e is known: the window is closed, later steps and losses change nothing."""
    return self._t_e is not None

  def averaged(self, final: bool = True) -> Any:
    """The average of the weights in the window, as a tree of float32 (float64) arrays.

    ``final=True``: as if training ended now (module docstring: undecided segments and the
    steps after the last evaluation count, or the fallback before ``t_s``). ``final=False``:
    only the segments already known to be inside the window.
    """
    parts = [(self._total_sum, self._total_count)]
    if self._t_s is None:
      if not final:
        parts = []  # before t_s the total is the fallback's, not a committed window
      else:
        parts += [(s.sum, s.count) for s in self._queue if s.index >= 1]
        if self._n_evals >= 1:  # steps after the first evaluation only
          parts.append((self._open_sum, self._open_count))
    elif final and not self.done:
      parts += [(s.sum, s.count) for s in self._queue] + [(self._open_sum, self._open_count)]
    parts = [(s, c) for s, c in parts if c > 0]
    if not parts:
      raise ValueError(
          f"swad: nothing to average yet ({self._n_evals} evaluations, t_s="
          f"{self._t_s}, final={final}): the window needs at least one step after the first "
          f"evaluation{'' if final else ' inside a decided window'}; call add_step every "
          f"step and end_segment at every evaluation, or use the plain params.")
    total, count = parts[0]
    for s, c in parts[1:]:
      total, count = _add_to_sum(total, s), count + c
    return _scale(total, jnp.asarray(count))

  # -- what a logger may read ------------------------------------------------------------------

  @property
  def t_s(self) -> int | None:
    return self._t_s

  @property
  def t_e(self) -> int | None:
    return self._t_e

  @property
  def n_evals(self) -> int:
    return self._n_evals

  @property
  def n_averaged(self) -> int:
    """Steps committed to the window so far (0 before t_s)."""
    return self._total_count if self._t_s is not None else 0

  @property
  def held_sums(self) -> int:
    """Weight-sized sums held now; at most ``max(n_converge, n_tolerance) + 1``."""
    return (sum(s.sum is not None for s in self._queue) + (self._open_sum is not None)
            + (self._total_sum is not None))

  # -- the decisions ---------------------------------------------------------------------------

  def _seek_start(self) -> None:
    """The queue's head is the earliest index not yet ruled out as t_s; it is decided once
    ``N_s`` losses from it are known."""
    while len(self._queue) >= self.n_converge:
      head = self._queue[0]
      if head.loss <= min(s.loss for s in self._queue[:self.n_converge]):
        self._t_s, self._t_s_loss = head.index, head.loss
        self._total_sum, self._total_count = None, 0  # the fallback is no longer needed
        return
      self._queue.pop(0)
      if head.index >= 1:  # kept for the fallback "every step after the first evaluation"
        self._commit(head)

  def _seek_end(self) -> None:
    """Commits the head while it cannot be t_e; stops at t_e or while undecided.

    Segment t_s is always in the window (t_e > t_s). A later head ``i`` is not t_e as soon as
    one of ``L_i, ..., L_{i+N_e-1}`` is known to be <= the threshold; it is t_e once all
    ``N_e`` are known and above it. So between calls the queue is the current run of losses
    above the threshold, shorter than ``N_e``.
    """
    threshold = (1.0 + self.tolerance_ratio) * self._t_s_loss
    while self._queue:
      head = self._queue[0]
      look_ahead = self._queue[:self.n_tolerance]
      if head.index == self._t_s or any(s.loss <= threshold for s in look_ahead):
        self._commit(self._queue.pop(0))
      elif len(look_ahead) == self.n_tolerance:
        self._t_e = head.index
        self._queue.clear()
        self._open_sum, self._open_count = None, 0
        return
      else:
        return

  def _commit(self, segment: _Segment) -> None:
    if segment.count == 0:
      return
    self._total_sum = (segment.sum if self._total_sum is None
                       else _add_to_sum(self._total_sum, segment.sum))
    self._total_count += segment.count
    segment.sum = None
    self._note_held()

  def _note_held(self) -> None:
    self.peak_held_sums = max(self.peak_held_sums, self.held_sums)

  # -- checkpointing ---------------------------------------------------------------------------

  def state_dict(self) -> dict:
    """Plain pytrees and ints/floats. Unknown indices are -1; an empty sum is left out (its
    count is 0), so no None leaves reach the checkpoint."""
    def with_sum(d: dict, sum_: Any) -> dict:
      return d if sum_ is None else {**d, "sum": sum_}
    return {
        "n_converge": self.n_converge, "n_tolerance": self.n_tolerance,
        "tolerance_ratio": self.tolerance_ratio, "n_evals": self._n_evals,
        "t_s": -1 if self._t_s is None else self._t_s,
        "t_e": -1 if self._t_e is None else self._t_e, "t_s_loss": self._t_s_loss,
        "open": with_sum({"count": self._open_count}, self._open_sum),
        "total": with_sum({"count": self._total_count}, self._total_sum),
        "queue": [with_sum({"index": s.index, "loss": s.loss, "count": s.count}, s.sum)
                  for s in self._queue],
    }

  @classmethod
  def from_state_dict(cls, state: Mapping[str, Any]) -> SwadAverager:
    """Inverse of ``state_dict``; also takes what a checkpoint restore without a target gives
    (0-d arrays for the numbers, a {"0": ..., "1": ...} mapping for the queue)."""
    self = cls(int(state["n_converge"]), int(state["n_tolerance"]),
               float(state["tolerance_ratio"]))
    self._n_evals = int(state["n_evals"])
    self._t_s = None if int(state["t_s"]) < 0 else int(state["t_s"])
    self._t_e = None if int(state["t_e"]) < 0 else int(state["t_e"])
    self._t_s_loss = float(state["t_s_loss"])
    self._open_count, self._open_sum = int(state["open"]["count"]), state["open"].get("sum")
    self._total_count, self._total_sum = int(state["total"]["count"]), state["total"].get("sum")
    queue = state["queue"]
    if isinstance(queue, Mapping):
      queue = [queue[k] for k in sorted(queue, key=int)]
    self._queue = [_Segment(int(s["index"]), float(s["loss"]), s.get("sum"), int(s["count"]))
                   for s in queue]
    sums = [self._open_sum, self._total_sum] + [s.sum for s in self._queue]
    first = next((s for s in sums if s is not None), None)
    if first is not None:
      self._treedef = jax.tree.structure(first)
    self._note_held()
    return self

  def checkpoint_parts(self) -> tuple[dict, dict]:
    """(JSON-able bookkeeping, {name: weight sum}): ``state_dict`` split for a checkpoint that
    stores numbers as JSON and arrays as arrays. Each ``"sum"`` in the bookkeeping is replaced
    by the name of its array."""
    info, arrays = self.state_dict(), {}
    entries = [("open", info["open"]), ("total", info["total"])]
    entries += [(f"queue{i}", q) for i, q in enumerate(info["queue"])]
    for name, entry in entries:
      if "sum" in entry:
        arrays[name] = entry.pop("sum")
        entry["sum"] = name
    return info, arrays

  @staticmethod
  def sum_names(info: Mapping[str, Any]) -> list[str]:
    """The array names a ``checkpoint_parts`` bookkeeping refers to (to build a restore target)."""
    entries = [info["open"], info["total"], *info["queue"]]
    return [e["sum"] for e in entries if "sum" in e]

  @classmethod
  def from_checkpoint_parts(cls, info: Mapping[str, Any], arrays: Mapping[str, Any]
                            ) -> SwadAverager:
    """Inverse of ``checkpoint_parts``."""
    state = copy.deepcopy(dict(info))
    for entry in [state["open"], state["total"], *state["queue"]]:
      if "sum" in entry:
        if entry["sum"] not in arrays:
          raise ValueError(f"swad: the checkpoint's bookkeeping names the weight sum "
                           f"{entry['sum']!r} but its arrays hold {sorted(arrays)}; it is "
                           f"damaged: resume from an older checkpoint or a fresh workdir.")
        entry["sum"] = arrays[entry["sum"]]
    return cls.from_state_dict(state)
