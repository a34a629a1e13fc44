"""Empty on purpose: ``sgl_kernel`` imports its compiled ``common_ops`` library, which
needs CUDA, and falls back to a plain ``import common_ops``. On a CPU-only machine
this module satisfies that import; Llama-family models on SGLang's CPU engine call no
sgl_kernel op (see docs/sglang/CPU.md). The server launcher puts this folder on
the server's PYTHONPATH only when it runs on CPU."""
