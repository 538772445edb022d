"""Networks and the model API: CD / ND (one decoder-only network) and ED, plus accounting.

  config.py           TransformerConfig (gin), validated at construction
  layers.py           RMSNorm, gated MLP, attention, embedding/logits (logical axis names)
  positions.py        T5 relative buckets, rotary, ALiBi
  masks.py            causal / prefix / padding / packing masks from seqio features
  stack.py            one layer, N layers by loop or nn.scan (+ remat), layout converters
  decoder.py          decoder-only network (CD: causal, ND: prefix attention)
  encoder_decoder.py  encoder-decoder network with encode / decode (encode-once via encoder_row)
  models.py           the model API: get_model(name, config), loss_fn, token_log_probs, score_batch
  accounting.py       params and training FLOPs via eval_shape; `python -m arch.accounting`
  testing.py          tiny configs, synthetic seqio-style batches, input-gradient probes
"""
