"""Publishing: the Hub export (weights, remote code, card), the push, the Inference Endpoints handler and the Space."""
