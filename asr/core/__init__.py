"""Bytes to result: decode (in a limited child), VAD, batching, features, recognition, punctuation,
sentences and writers, wired by the pipeline. Nothing here knows of queues, HTTP, Gradio or Ray."""
