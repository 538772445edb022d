"""Networks and the model API: CD / ND (one decoder-only network) and ED, plus accounting."""
