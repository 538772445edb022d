"""Parameters between the two layer layouts: scanned (`layers`, one leading axis of N layers) and
unrolled (`layers_0..layers_{N-1}`), with the converters of arch/stack.py.

`plan(saved, requested)` is what a restore asks (experiments/runtime/checkpoints.py): given the
names and shapes a checkpoint holds and the abstract tree a model wants, either nothing to convert
(None: the layouts agree, any other difference is reported as usual), or the tree to read in the
checkpoint's layout (shapes, and shardings derived from the requested ones: the layers axis
unsharded) with the function that turns it into the model's; or LayoutError saying what differs
when no conversion fits (e.g. 4 scanned layers for a model of 2).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from arch import stack
from experiments.runtime import checkpoints

NAME = "layers"
_UNROLLED = re.compile(rf"^{NAME}_(\d+)$")


class LayoutError(checkpoints.CheckpointError):
  """A checkpoint's layer layout that cannot be converted into the model's."""


def _as_abstract(tree: Any) -> Any:
  def leaf(x):
    sharding = getattr(x, "sharding", None)  # orbax's metadata has its own kind: not placed
    return jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=sharding if isinstance(
        sharding, jax.sharding.Sharding) else None)

  return jax.tree_util.tree_map(leaf, tree)


def _key(k) -> str:
  return str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))


def _flat(tree: Any) -> dict[str, Any]:
  return {"/".join(_key(k) for k in path): x
          for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def describe(tree: Any) -> str:
  """Each layer stack and its layout: '2 scanned layers' (decoder-only) or 'decoder: 2 unrolled
  layers; encoder: 8 unrolled layers'."""
  scanned, unrolled = _stacks(tree)
  at = lambda w: f"{w}: " if w else ""  # noqa: E731  # decoder-only stacks sit at the top
  out = [f"{at(w)}{n} scanned layers" for w, n in scanned.items()]
  out += [f"{at(w)}{len(ix)} unrolled layers" for w, ix in unrolled.items()]
  return "; ".join(sorted(out)) or "no layer stack"


def _stacks(tree: Any) -> tuple[dict[str, int], dict[str, set[int]]]:
  """({where: layers} of scanned stacks, {where: layer indices} of unrolled ones)."""
  scanned: dict[str, int] = {}
  unrolled: dict[str, set[int]] = {}
  for path, x in _flat(tree).items():
    parts = path.split("/")
    for i, part in enumerate(parts):
      where = "/".join(parts[:i])
      if part == NAME and x.shape:
        scanned[where] = int(x.shape[0])
      elif _UNROLLED.match(part):
        unrolled.setdefault(where, set()).add(int(_UNROLLED.match(part).group(1)))
  return scanned, unrolled


def _places(tree: Any) -> set[str]:
  """Where the tree's layer stacks sit ('' decoder-only; 'encoder', 'decoder' ...), any layout."""
  scanned, unrolled = _stacks(tree)
  return set(scanned) | set(unrolled)


def _same(a: Any, b: Any) -> bool:
  fa, fb = _flat(a), _flat(b)
  return fa.keys() == fb.keys() and all(tuple(fa[k].shape) == tuple(fb[k].shape) for k in fa)


def _sharding_from(path: str, requested: dict[str, Any]) -> Any:
  """The sharding of a leaf in the other layout, from the requested leaf it becomes."""
  if path in requested:
    return requested[path].sharding
  parts = path.split("/")
  for i, part in enumerate(parts):
    if part == NAME:  # saved scanned, requested unrolled: a layer's spec behind the layers axis
      other = requested.get("/".join(parts[:i] + [f"{NAME}_0"] + parts[i + 1:]))
      if other is not None:
        return _shifted(other.sharding, +1)
    elif _UNROLLED.match(part):  # saved unrolled, requested scanned: drop the layers axis
      other = requested.get("/".join(parts[:i] + [NAME] + parts[i + 1:]))
      if other is not None:
        return _shifted(other.sharding, -1)
  return None


def _shifted(sharding: Any, direction: int) -> Any:
  if not isinstance(sharding, NamedSharding):
    return sharding  # a single device (evaluation): the same device
  spec = tuple(sharding.spec)
  return NamedSharding(sharding.mesh, P(None, *spec) if direction > 0 else P(*spec[1:]))


def plan(saved: Any, requested: Any) -> tuple[Any, Callable[[Any], Any]] | None:
  """(the tree to restore in the checkpoint's layout, its conversion) or None when none is needed.

  `saved`: the checkpoint's names and shapes (orbax metadata); `requested`: the model's abstract
  parameters, with shardings where the restore should place them.
  """
  saved_abs, requested_abs = _as_abstract(saved), _as_abstract(requested)
  if _same(saved_abs, requested_abs) or describe(saved_abs) == describe(requested_abs):
    return None
  if _places(saved_abs) != _places(requested_abs):
    return None  # another architecture, not another layout: the restore names what is absent
  for to_model, to_saved in ((stack.scanned_to_unrolled, stack.unrolled_to_scanned),
                             (stack.unrolled_to_scanned, stack.scanned_to_unrolled)):
    converted = jax.eval_shape(to_model, _strip(saved_abs))
    if _same(converted, requested_abs):
      requested_flat = _flat(requested_abs)
      shapes = jax.eval_shape(to_saved, _strip(requested_abs))
      paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(shapes)]
      leaves = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding_from(
          "/".join(_key(k) for k in path), requested_flat))
          for path, x in zip(paths, jax.tree_util.tree_leaves(shapes))]
      target = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), leaves)
      shardings = jax.tree_util.tree_map(lambda x: x.sharding, requested_abs)

      def convert(restored, to_model=to_model, shardings=shardings):
        out = to_model(restored)
        return jax.tree_util.tree_map(
            lambda x, s: x if s is None else jax.device_put(x, s), out, shardings)

      return target, convert
  raise LayoutError(f"the checkpoint holds {describe(saved_abs)}; the model has "
                    f"{describe(requested_abs)}, and no scanned <-> unrolled conversion maps one "
                    f"onto the other (arch.config.TransformerConfig.num_layers / "
                    f"num_encoder_layers / num_decoder_layers?).")


def _strip(tree: Any) -> Any:
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
