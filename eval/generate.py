r"""Text generation from a checkpoint through the model API's cached `predict_batch`.

  python -m eval.generate --gin_file=gin_configs/arch/causal_decoder.gin \
    --gin_file=gin_configs/sizes/tiny.gin --gin_file=gin_configs/data/embedded.gin \
    --gin.CHECKPOINT_PATH="'runs/cd_flm'" --gin.PROMPTS="['ROMEO:', 'To be or not']" \
    [--gin.eval.generate.generate_checkpoint.max_new_tokens=64] \
    [--gin.eval.generate.generate_checkpoint.temperature=0.7] \
    [--gin.eval.generate.generate_checkpoint.top_k=40] \
    [--gin.eval.generate.generate_checkpoint.seed=1]

prints a JSON list of {"prompt", "continuation"}. Python: `generate_texts(model, params, prompts,
...)` (lm-eval's generate_until goes through it) and `run(gin_files, gin_bindings)`.

A prompt is encoded as the evaluator scores it (no EOS after it; an encoder-decoder prompt that
would be empty gets the EOS, as eval/rank_classification.py does) and, past max_prompt_length
tokens, loses its beginning (said once, in the log). Generation stops at EOS or max_new_tokens;
stop strings (`until`) cut the text at their first occurrence, as lm-evaluation-harness does.
Prompts are decoded in batches of similar length, padded to a power-of-two width so that few
programs are compiled; sampled continuations depend on the seed and on the batching.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import json
import logging
from typing import Any, Sequence

import gin
import jax
import numpy as np

from eval import zero_shot
from experiments.runtime import checkpoints
from experiments.runtime import errors
from experiments.runtime import gin_utils
from experiments.runtime.errors import ConfigError


class GenerateConfigError(ConfigError):
  """A generation request that cannot run (prompts, lengths, sampling settings, checkpoint)."""


def _next_pow2(n: int) -> int:
  return 1 << max(0, (int(n) - 1).bit_length())


def check_prompts(prompts: Any, source: str = "PROMPTS") -> list[str]:
  """A non-empty list of strings (a lone string is a mistake: it would be split into characters)."""
  if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
    raise GenerateConfigError(f"{source} = {prompts!r}: expected a non-empty list of strings, e.g. "
                              f"--gin.PROMPTS=\"['ROMEO:']\".")
  bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
  if bad:
    raise GenerateConfigError(f"{source}[{bad[0]}] = {prompts[bad[0]]!r} is not a string.")
  return list(prompts)


def cut_at_stop(text: str, until: Sequence[str]) -> str:
  """`text` up to the first occurrence of any stop string (the stop string itself dropped)."""
  end = len(text)
  for stop in until:
    if stop:
      i = text.find(stop)
      if i != -1:
        end = min(end, i)
  return text[:end]


def _encode_prompts(model, prompts: Sequence[str], vocabulary, max_prompt_length: int
                    ) -> list[list[int]]:
  eos = int(vocabulary.eos_id)
  encoder_decoder = bool(model.arch.encoder_decoder)
  out, cut = [], 0
  for text in prompts:
    ids = list(vocabulary.encode(text)) if text else []
    if encoder_decoder and not ids:
      ids = [eos]  # an encoder row with no token has nothing to attend to
    if len(ids) > max_prompt_length:
      ids, cut = ids[len(ids) - max_prompt_length:], cut + 1
    out.append(ids)
  if cut:
    logging.warning("generate: %d of %d prompts exceed max_prompt_length = %d tokens and lose "
                    "their beginning.", cut, len(prompts), max_prompt_length)
  return out


def generate_texts(model: Any, params: Any, prompts: Sequence[str], *, until: Sequence[str] = (),
                   max_new_tokens: int, vocabulary: Any, temperature: float = 0.0, top_k: int = 0,
                   seed: int = 0, batch_size: int = 8, max_prompt_length: int = 1024
                   ) -> list[str]:
  """Continuations of `prompts` (text), in their order: greedy at temperature 0, else sampled."""
  prompts = check_prompts(prompts, "prompts")
  if isinstance(until, str):
    until = (until,)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise GenerateConfigError(f"batch_size = {batch_size!r}: expected an integer >= 1.")
  if (isinstance(max_prompt_length, bool) or not isinstance(max_prompt_length, int)
      or max_prompt_length < 1):
    raise GenerateConfigError(f"max_prompt_length = {max_prompt_length!r}: expected an integer "
                              f">= 1.")
  ids = _encode_prompts(model, prompts, vocabulary, max_prompt_length)
  eos = int(vocabulary.eos_id)
  order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
  texts: list[str] = [""] * len(ids)
  rng = jax.random.PRNGKey(seed)
  for n, start in enumerate(range(0, len(order), batch_size)):
    rows = order[start:start + batch_size]
    width = min(_next_pow2(max(1, max(len(ids[i]) for i in rows))), max_prompt_length)
    inputs_BxP = np.zeros((batch_size, width), np.int32)  # a fixed row count: one program
    for r, i in enumerate(rows):
      inputs_BxP[r, :len(ids[i])] = ids[i]
    out_BxN = np.asarray(model.predict_batch(
        params, {"inputs": inputs_BxP}, jax.random.fold_in(rng, n),
        max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, eos_id=eos))
    for r, i in enumerate(rows):
      toks = out_BxN[r].tolist()
      toks = toks[:toks.index(eos)] if eos in toks else toks
      texts[i] = cut_at_stop(vocabulary.decode([t for t in toks if t > 0]), until)
  return texts


@gin.configurable(module="eval.generate")
def generate_checkpoint(model: Any = gin.REQUIRED, vocabulary: Any = gin.REQUIRED,
                        checkpoint_path: str = gin.REQUIRED, prompts: Sequence[str] = gin.REQUIRED,
                        max_new_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
                        seed: int = 0, until: Sequence[str] = (), batch_size: int = 8,
                        max_prompt_length: int = 1024) -> list[dict]:
  """The gin-configured generation: checks the prompts, restores, generates."""
  prompts = check_prompts(prompts)
  step_dir = checkpoints.resolve_step_dir(checkpoint_path)
  params = zero_shot.restore_for_eval(model, step_dir)
  texts = generate_texts(model, params, prompts, until=until, max_new_tokens=max_new_tokens,
                         vocabulary=vocabulary, temperature=temperature, top_k=top_k, seed=seed,
                         batch_size=batch_size, max_prompt_length=max_prompt_length)
  return [{"prompt": p, "continuation": t} for p, t in zip(prompts, texts)]


_DEFAULT_BINDINGS = (
    "CHECKPOINT_PATH = %gin.REQUIRED",
    "PROMPTS = %gin.REQUIRED",
    "DROPOUT_RATE = 0.0",
    "TINY_FEATURE_LENGTHS = None",
    "eval.generate.generate_checkpoint.model = %MODEL",
    "eval.generate.generate_checkpoint.vocabulary = %VOCABULARY",
    "eval.generate.generate_checkpoint.checkpoint_path = %CHECKPOINT_PATH",
    "eval.generate.generate_checkpoint.prompts = %PROMPTS",
)


def run(gin_files: Sequence[str], gin_bindings: Sequence[str] = ()) -> list[dict]:
  """Parses gin afresh (defaults, files, bindings) and generates; returns prompt/continuation."""
  gin_utils.parse_gin(gin_files, gin_bindings, defaults=_DEFAULT_BINDINGS)
  return errors.call_unwrapped(generate_checkpoint)


def main(argv: Sequence[str]) -> int:
  """The command line (under experiments.runtime.cli): gin flags only; prints JSON."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  if rest:
    raise gin_utils.GinConfigError(f"unexpected arguments {rest} (use --gin.KEY=VALUE).")
  try:
    results = run(files, bindings)
  except checkpoints.CheckpointError as e:  # missing, incomplete or another model's
    raise GenerateConfigError(f"CHECKPOINT_PATH: {e}") from e
  print(json.dumps(results, indent=1, ensure_ascii=False))
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
