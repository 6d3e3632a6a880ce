"""Small example models that are no transformers architecture (plain nn.Modules)."""
