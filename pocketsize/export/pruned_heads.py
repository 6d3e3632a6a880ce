"""Export decoders whose layers lost different attention heads (`config.pruned_heads`, as
transformers' `prune_heads` records them on GPT-2) with past key values.

optimum's exporter traces the model with dummy past key values of one head count for every
layer, taken from the config, so a layer with fewer heads fails the trace ("Sizes of tensors
must match"). This gives optimum's own export config for the model a past generator with each
layer's count; the exported graph then states every layer's past shape, which pocketsize's
ONNX Runtime loader reads (tasks/causal_lm.py).
"""

from __future__ import annotations


def per_layer_head_counts(config) -> list[int] | None:
    """Each layer's head count where `config.pruned_heads` makes them differ from the config's."""
    pruned = {int(k): v for k, v in (getattr(config, "pruned_heads", None) or {}).items()}
    if not any(pruned.values()):
        return None
    heads = config.num_attention_heads
    return [heads - len(pruned.get(i, [])) for i in range(config.num_hidden_layers)]


def custom_onnx_configs(config, optimum_task: str) -> dict | None:
    """`main_export(custom_onnx_configs=...)` for a decoder with pruned heads, else None."""
    counts = per_layer_head_counts(config)
    if counts is None or config.is_encoder_decoder:
        return None
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the architectures)
    from optimum.exporters.tasks import TasksManager
    from optimum.utils import DummyPastKeyValuesGenerator

    head_size = config.hidden_size // config.num_attention_heads

    class PerLayerPast(DummyPastKeyValuesGenerator):
        def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
            def tensor(heads):
                shape = (self.batch_size, heads, self.sequence_length, head_size)
                return self.random_float_tensor(shape, framework=framework, dtype=float_dtype)

            return [(tensor(n), tensor(n)) for n in counts]

    constructor = TasksManager.get_exporter_config_constructor(
        exporter="onnx",
        model_type=config.model_type,
        task=optimum_task,
        library_name="transformers",
    )
    base = constructor.func
    generators = tuple(
        PerLayerPast if issubclass(g, DummyPastKeyValuesGenerator) else g
        for g in base.DUMMY_INPUT_GENERATOR_CLASSES
    )
    cls = type(
        f"PerLayerHeads{base.__name__}",
        (base,),
        {"DUMMY_INPUT_GENERATOR_CLASSES": generators, "DUMMY_PKV_GENERATOR_CLASS": PerLayerPast},
    )
    # what optimum's own decoder export builds (exporters/utils.py), with the past as inputs
    kwargs = {**constructor.keywords, "use_past_in_inputs": constructor.keywords.get("use_past")}
    return {"model": cls(config, **kwargs)}
