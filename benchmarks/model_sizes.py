"""The two model sizes the evaluation and decoding benchmarks time (TransformerConfig fields)."""

SIZES = {
    "tiny": dict(emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_layers=2,
                 num_encoder_layers=2, num_decoder_layers=2),
    "small": dict(emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024, num_layers=4,
                  num_encoder_layers=4, num_decoder_layers=4),
}
