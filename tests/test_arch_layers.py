"""arch.layers.token_matmul: the vocabulary projection's custom weight gradient is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import layers


@pytest.mark.parametrize("in_dims", [1, 2])
def test_weight_grad_gemm_gives_the_autodiff_gradients(in_dims):
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (3, 5, 4, 6) if in_dims == 2 else (3, 5, 24))
  kernel = jax.random.normal(keys[1], (4, 6, 40) if in_dims == 2 else (24, 40))
  dy = jax.random.normal(keys[2], (3, 5, 40))

  def loss(x, kernel, custom):
    return jnp.sum(layers.token_matmul(x, kernel, in_dims, weight_grad_gemm=custom) * dy)

  y_custom = jax.jit(lambda x, k: layers.token_matmul(x, k, in_dims, weight_grad_gemm=True))(
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


def test_the_vocabulary_projection_uses_it_on_cpu():
  x = jnp.ones((2, 3, 8))
  kernel = jnp.ones((8, 16))
  jaxpr = str(jax.make_jaxpr(lambda k: jax.grad(
      lambda k: jnp.sum(layers.token_matmul(x, k, weight_grad_gemm=True)))(k))(kernel))
  assert ("optimization_barrier" in jaxpr) == (jax.default_backend() == "cpu")
  plain = str(jax.make_jaxpr(lambda k: jax.grad(
      lambda k: jnp.sum(layers.token_matmul(x, k)))(k))(kernel))
  assert "optimization_barrier" not in plain
