"""Networks and the model API: CD / ND (one decoder-only network) and ED, plus accounting.

Imports run one way. arch imports only itself, the libraries (JAX, Flax, seqio, gin, numpy) and
experiments.runtime, the runtime every package shares (its error base, and gin flags for the
accounting command). It never imports objectives, eval or experiments: those read arch (the
registry, the model API), arch reads none of them, so a network knows nothing of objectives, data
or evaluation, and anything above can rely on arch without a cycle.

  registry.py         the architectures by name: factory, encoder-decoder or not, bidirectional
                      prefix, feature converter, FLOP rule, default lengths (register / get / names)
  config.py           TransformerConfig (gin), validated at construction; resolve_for_platform
                      makes its 'auto' settings concrete for the step's platform
  layers.py           RMSNorm, gated MLP, attention, embedding/logits (logical axis names)
  kernels/            the attention core and the other backend kernels behind one switch
                      (TransformerConfig.attention_impl): reference 'xla', 'cpu', 'blockwise',
                      'cudnn', 'pallas_tpu'; 'auto' resolved by the mesh's platform
  positions.py        T5 relative buckets and the per-stack [1, H, Q, K] bias, rotary, ALiBi
  masks.py            causal / prefix / padding / packing masks from seqio features, dense or as
                      per-token vectors (AttentionMask) for blockwise and fused kernels
  stack.py            one layer, N layers by loop or nn.scan (+ named remat policies), layout
                      converters
  decoder.py          decoder-only network (CD: causal, ND: prefix attention)
  encoder_decoder.py  encoder-decoder network with encode / decode (encode-once via encoder_row)
  models.py           the model API (loss_fn with z_loss, token_log_probs, score_batch), the
                      built-in architectures' registration, get_model(name, config, z_loss=...)
  converters.py       the decoder-only seqio feature converter (seqio's, plus rows of a set length:
                      TASK_FEATURE_LENGTHS['decoder_length'])
  flops.py            per-architecture FLOP rules: tokens per matmul role, attention pairs
  accounting.py       params and training FLOPs via eval_shape; `python -m arch.accounting`
                      (--memory: the per-device memory of a train step)
  memory.py           per-device memory estimate: params, optimizer, gradients, activations
  axis_rules.py       logical axis rules per sharding strategy (experiments/partitioning uses them)
  testing.py          tiny configs, synthetic seqio-style batches, input-gradient probes
"""
