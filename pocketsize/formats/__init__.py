"""The model formats every stage reads and writes, below the stages and the task adapters.

    onnx_dir     an ONNX model directory: its manifest, which graph is "the model" (one order),
                 the graphs of a multi-graph export, side files, the ONNX Runtime session
    ort_format   the ONNX Runtime mobile format (.ort), checked against the .onnx
    module_dir   non-transformers PyTorch models (the BiLSTM student, user modules): one format
    model_dir    any saved PyTorch model directory, loaded with its [UNK] clamp
    vocab_clamp  the [UNK] clamp of a vocabulary-trimmed model (a PyTorch and an ONNX twin)

Nothing here knows a task or a stage; callers pass what differs (e.g. the Auto class).
"""
