"""The runtime layer below the stages: the runners that score and time a model on PyTorch, ONNX
Runtime or its mobile format (runners.py; which runtime runs which model: registry.py), where
they run (devices.py), what a model costs to ship (cost.py) and the one scoring path every stage
shares (scoring.py: eval's report, quantize's accuracy budget, distillation's validation).

Nothing heavy is imported here: the peak-memory child imports only its variant's runtime.
"""
