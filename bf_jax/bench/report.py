"""Markdown tables from benchmark rows (the JSON lines of ``python -m bf_jax.bench``)."""

from __future__ import annotations


def _pct(a: float, b: float) -> str:
  return f"{100 * (a / b - 1):+.1f}%"


def markdown(rows: list[dict]) -> str:
  """Train/eval step table with BatchFormer overhead and the JAX/torch ratio per case."""
  hw = next((r for r in rows if "platform" in r), {})
  lines = [f"Hardware: {hw.get('device_kind', '?')} x{hw.get('devices', '?')} "
           f"({hw.get('platform', '?')}; host CPU {hw.get('cpu', '?')}, "
           f"{hw.get('cpu_count', '?')} cores), JAX {hw.get('jax', '?')}.", ""]
  jax_rows = {r["case"]: r for r in rows if r.get("impl") == "jax" and "train_ms" in r}
  torch_rows = {r["case"]: r for r in rows if r.get("impl") == "torch"}
  lines += ["| case | train ms | img/s | eval ms | BF train overhead | torch train ms | "
            "JAX speed-up |", "|---|---|---|---|---|---|---|"]
  for name, r in jax_rows.items():
    base = jax_rows.get(name.replace(f"/bf-{r['scope']}/", "/no-bf/"))
    overhead = _pct(r["train_ms"], base["train_ms"]) if r["bf"] and base else ""
    t = torch_rows.get(name)
    torch_ms = f"{t['train_ms']:.1f}" if t else ""
    speedup = f"{t['train_ms'] / r['train_ms']:.2f}x" if t else ""
    lines.append(f"| {name} | {r['train_ms']:.1f} | {r['train_img_s']:.0f} | {r['eval_ms']:.1f} | "
                 f"{overhead} | {torch_ms} | {speedup} |")
  scope = {r["scope"]: r for r in jax_rows.values() if r["devices"] > 1 and r["bf"]}
  if {"global", "device"} <= scope.keys():
    lines += ["", f"Global scope vs device scope on {scope['global']['devices']} devices: "
                  f"{_pct(scope['global']['train_ms'], scope['device']['train_ms'])} train step."]
  for r in rows:
    if r.get("check") == "paired_bf_overhead":
      lines += ["", f"BatchFormer train-step overhead, {r['case']}, median of {r['pairs']} "
                    f"alternating pairs: {100 * r['overhead']:+.1f}% (pair ratios "
                    f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f}; {r['train_ms_without']:.1f} vs "
                    f"{r['train_ms_with']:.1f} ms)."]
    if r.get("check") == "eval_program_equal_with_and_without_bf":
      lines += ["", f"Eval program with BatchFormer configured == without ({r['backbone']}, "
                    f"optimized HLO, metadata stripped): {r['equal']}."]
  pipe = [r for r in rows if r.get("impl") == "pipeline"]
  if pipe:
    lines += ["", "| input pipeline | threads | img/s |", "|---|---|---|"]
    lines += [f"| {r['augmentation']} | {r['threads']} | {r['images_per_s']:.0f} |" for r in pipe]
  return "\n".join(lines) + "\n"
