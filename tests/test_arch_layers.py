"""arch/kernels/cpu.py: the CPU kernels' custom gradients (vocabulary weight gradient, bias
unbroadcast) give autodiff's numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import layers
from arch.kernels import cpu


@pytest.mark.parametrize("in_dims", [1, 2])
def test_weight_grad_gemm_gives_the_autodiff_gradients(in_dims):
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (3, 5, 4, 6) if in_dims == 2 else (3, 5, 24))
  kernel = jax.random.normal(keys[1], (4, 6, 40) if in_dims == 2 else (24, 40))
  dy = jax.random.normal(keys[2], (3, 5, 40))

  def loss(x, kernel, custom):
    dot = cpu.vocab_dot if custom else jnp.dot
    return jnp.sum(layers.token_matmul(x, kernel, in_dims, dot=dot) * dy)

  y_custom = jax.jit(lambda x, k: layers.token_matmul(x, k, in_dims, dot=cpu.vocab_dot))(
      x, kernel)
  dx, dk = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(x, kernel, True)
  dx_ref, dk_ref = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(x, kernel, False)
  assert dx.shape == x.shape and dk.shape == kernel.shape
  np.testing.assert_allclose(y_custom, layers.token_matmul(x, kernel, in_dims), rtol=1e-6)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5)
  # Against float64: dW = x^T dy over the flattened tokens.
  x64 = np.asarray(x, np.float64).reshape(15, -1)
  dk64 = (x64.T @ np.asarray(dy, np.float64).reshape(15, 40)).reshape(kernel.shape)
  np.testing.assert_allclose(dk, dk64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,y_shape", [
    ((8, 1, 16, 16), (1, 4, 16, 16)),  # mask bias + relative-position bias (decoder-only)
    ((8, 4, 16, 16), (1, 1, 16, 16)),  # two leading axes
    ((1, 4, 6, 6), (3, 4, 6, 6)),      # the first operand broadcast
    ((2, 3, 5), (2, 1, 5)),            # a middle axis only (plain sum)
    ((3, 1, 5), (1, 4, 5)),            # leading and middle axes in different operands
])
def test_broadcast_add_gives_the_autodiff_gradients(x_shape, y_shape):
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(keys[0], x_shape)
  y = jax.random.normal(keys[1], y_shape)
  ct = jax.random.normal(keys[2], jnp.broadcast_shapes(x_shape, y_shape))

  def loss(x, y, add):
    return jnp.sum(add(x, y) * ct)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
  dx, dy = grads(x, y, cpu.broadcast_add)
  dx_ref, dy_ref = grads(x, y, jnp.add)
  np.testing.assert_array_equal(cpu.broadcast_add(x, y), x + y)
  assert dx.shape == x_shape and dy.shape == y_shape
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dy, dy_ref, rtol=1e-5, atol=1e-5)
  # Against float64 sums of the cotangent.
  ct64 = np.asarray(ct, np.float64)
  for g, shape in ((dx, x_shape), (dy, y_shape)):
    full = (1,) * (ct64.ndim - len(shape)) + shape
    axes = tuple(d for d in range(ct64.ndim) if full[d] == 1 and ct64.shape[d] != 1)
    np.testing.assert_allclose(g, ct64.sum(axis=axes, keepdims=True).reshape(shape),
                               rtol=1e-5, atol=1e-5)


def test_broadcast_add_sums_leading_axes_as_a_gemv():
  mask = jnp.zeros((8, 1, 16, 16))
  relpos = jnp.ones((1, 4, 16, 16))
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda r: jnp.sum(cpu.broadcast_add(mask, r) ** 2)))(relpos))
  assert "dot_general" in jaxpr
  same_shape = str(jax.make_jaxpr(jax.grad(
      lambda r: jnp.sum(cpu.broadcast_add(jnp.zeros((1, 4, 16, 16)), r) ** 2)))(relpos))
  assert "custom_vjp" not in same_shape and "dot_general" not in same_shape
