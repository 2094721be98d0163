"""Generation: prompts, code extraction, engines (vLLM, transformers) and the GeneratorActor.

`prompts` and `extract` are pure (no torch); engines import torch/vLLM only when built.
"""
