"""The one wrapper of every `python -m` entry point: host set-up, quiet logs, exit codes.

  if __name__ == "__main__":
    from experiments.runtime import cli
    cli.start()                 # first: before JAX or TensorFlow is imported
  ...                           # the module's imports and code
  if __name__ == "__main__":
    cli.run(main, doc=__doc__)  # main(argv) -> int | None

`start` re-executes the process once with the tuned allocator (hostenv) and sets the environment
that keeps TensorFlow's and XLA's C++ start-up lines quiet; it has to run before those libraries
load, which is why it is separate from `run`. `run` prints the docstring for -h/--help, sets up
logging (the harness's lines at INFO; libraries at ERROR), calls main, and exits: 0 done, 1 a
failed run, 2 a configuration error (`error:` and one line), 130 Ctrl-C. `--verbose` or
ZEROSHOT_HARNESS_VERBOSE=1 shows every library's logs and full tracebacks.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import traceback
from typing import Callable, NoReturn, Sequence

from experiments.runtime import hostenv
from experiments.runtime.errors import ConfigError

VERBOSE_ENV = "ZEROSHOT_HARNESS_VERBOSE"
VERBOSE_FLAG = "--verbose"
# Library loggers that are chatty at INFO/WARNING about things a user cannot act on (orbax's
# read-only and async notes through absl, JAX's "no GPU found", TensorFlow's start-up).
_LIBRARY_LOGGERS = ("absl", "jax", "jax._src.xla_bridge", "orbax", "tensorflow", "seqio",
                    "tensorstore", "etils", "matplotlib", "h5py")
# Environment read by TensorFlow's and XLA's C++ logging when they load (3: errors only).
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}


def verbose(argv: Sequence[str] | None = None) -> bool:
  argv = sys.argv[1:] if argv is None else argv
  return VERBOSE_FLAG in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def start() -> None:
  """Before the heavy imports: the quiet environment (unless verbose), then the host re-exec."""
  if verbose():
    hostenv.reexec_with_tuned_allocator()
    return
  for key, val in _QUIET_ENV.items():
    os.environ.setdefault(key, val)
  hostenv.reexec_with_tuned_allocator()
  filter_native_stderr()


# C++ start-up lines that TensorFlow and XLA write to fd 2 before their log level applies
# (TF_CPP_MIN_LOG_LEVEL no longer reaches absl's pre-init messages): glog-style INFO/WARNING
# lines, absl's pre-init notice, and the CUDA probing errors of a CPU-only host.
_NATIVE_NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    rb"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] .*(?:cuInit|CUDA|cuda|cuDNN|cuFFT|cuBLAS)"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")
# The first bytes of a line that may become noise: held back until the line is complete.
_MAYBE_NOISE = re.compile(rb"^(?:[IWE]\d{0,4}(?: [\d:.]*)?$|[IWE]\d{4} |WARNING: All log)")


def filter_native_stderr() -> None:
  """Routes fd 2 through a thread that drops _NATIVE_NOISE lines and forwards everything else.

  Python's own stderr goes through it too, unchanged (progress bars included: partial lines are
  forwarded as they come). At exit the pipe is drained and fd 2 restored.
  """
  original = os.dup(2)
  read_fd, write_fd = os.pipe()
  os.dup2(write_fd, 2)
  os.close(write_fd)

  def pump():
    pending = b""
    while True:
      chunk = os.read(read_fd, 65536)
      if not chunk:
        break
      lines = (pending + chunk).splitlines(keepends=True)
      pending = b""
      out = []
      for line in lines:
        if not line.endswith((b"\n", b"\r")) and _MAYBE_NOISE.match(line):
          pending = line  # decide when the line is complete
        elif _NATIVE_NOISE.match(line) is None:
          out.append(line)
      if out:
        os.write(original, b"".join(out))
    if pending:
      os.write(original, pending)

  thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
  thread.start()

  def restore():
    sys.stderr.flush()
    os.dup2(original, 2)  # closes the pipe's last write end: the pump drains and stops
    thread.join(timeout=5)

  atexit.register(restore)


def configure_logging(is_verbose: bool) -> None:
  """Root at INFO with a short format; libraries at ERROR unless verbose."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      force=True)
  level = logging.NOTSET if is_verbose else logging.ERROR
  for name in _LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(level)
  if not is_verbose:
    import warnings  # pylint: disable=g-import-not-at-top
    warnings.filterwarnings("ignore")
    try:  # absl's own verbosity (orbax logs through it), when absl is installed
      from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
      absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
      pass


def _message(e: BaseException) -> str:
  """The error's own message, without the call-site lines gin appends ("In call to ...")."""
  return str(e).split("\n  In call to configurable")[0].strip()


def run(main: Callable[[list[str]], int | None], doc: str | None = None,
        argv: Sequence[str] | None = None) -> NoReturn:
  """Calls main(argv without --verbose) and exits with the harness's exit codes."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in ("-h", "--help") for a in argv):
    from experiments.runtime import gin_utils  # pylint: disable=g-import-not-at-top
    print((doc or "").strip() or gin_utils.USAGE)
    sys.exit(0)
  is_verbose = verbose(argv)
  argv = [a for a in argv if a != VERBOSE_FLAG]
  configure_logging(is_verbose)
  try:
    # Before main touches TensorFlow: on a GPU host its runtime would reserve the GPUs' memory.
    from experiments.runtime import accelerators  # pylint: disable=g-import-not-at-top
    accelerators.hide_gpus_from_tensorflow()
    code = main(argv)
  except ConfigError as e:
    if is_verbose:
      traceback.print_exc()
    print(f"error: {_message(e)}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("interrupted (Ctrl-C)", file=sys.stderr)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    if is_verbose:
      traceback.print_exc()
    print(f"error: {type(e).__name__}: {_message(e)}" +
          ("" if is_verbose else f" (rerun with {VERBOSE_FLAG} for the traceback)"),
          file=sys.stderr)
    sys.exit(1)
  sys.exit(0 if code is None else int(code))
