"""The runtime every entry point shares, below every other package: flags and gin (gin_utils),
the host re-exec (hostenv), logging and exit codes (cli). Standard library and gin only at import
time, so an entry point can re-exec before JAX or TensorFlow is loaded. arch/, objectives/ and
eval/ may import this subpackage and nothing else of experiments/."""
