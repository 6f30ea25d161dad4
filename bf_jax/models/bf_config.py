"""``config.bf`` -> the BatchFormer's arguments, in one place for V1, V2 and the probe.

Errors name the config field to change, not the layer's own argument.
"""

from __future__ import annotations

from typing import Any


def group_size(bf_cfg, local_batch: int) -> int | None:
  """``bf.scope``: 'global' -> None (the whole batch), 'device' -> the per-device batch,
  '<k>' -> groups of k samples."""
  if bf_cfg.scope == "global":
    return None
  if bf_cfg.scope == "device":
    return local_batch
  return int(bf_cfg.scope)


def check_scope(bf_cfg, batch_size: int, n_devices: int) -> None:
  """A ``bf.scope`` group size must divide the global batch."""
  group = group_size(bf_cfg, batch_size // n_devices)
  if bf_cfg.enabled and group and batch_size % group:
    raise ValueError(f"bf.scope={bf_cfg.scope!r}: group_size={group} does not divide the "
                     f"global batch of {batch_size}; set --config.bf.scope to a divisor.")


def layer_kwargs(bf_cfg, dim: int, local_batch: int, axis_name: str = "data",
                 width_fields: str = "--config.model.width for mlp/cnn, "
                                     "--config.model.width_mult or model.name for ResNets"
                 ) -> dict[str, Any]:
  """Keyword arguments of ``BatchFormer(dim, **kwargs)`` for features ``dim`` wide.

  ``width_fields`` names the config fields that set ``dim``, for the error message.
  """
  # The layer would name its own dim=...; this names the config fields.
  if bf_cfg.enabled and dim % bf_cfg.num_heads:
    divisors = [h for h in range(1, min(dim, 64) + 1) if dim % h == 0]
    raise ValueError(
        f"config.bf.num_heads={bf_cfg.num_heads} does not divide the backbone's feature width "
        f"{dim}; set --config.bf.num_heads to one of {divisors}, or change the width "
        f"({width_fields}).")
  return dict(num_heads=bf_cfg.num_heads, dropout=bf_cfg.dropout, num_layers=bf_cfg.num_layers,
              axis_name=axis_name, group_size=group_size(bf_cfg, local_batch))
