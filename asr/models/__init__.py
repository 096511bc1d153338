"""The pinned models: where they live, download, bundle, load, precision conversion, the FunASR shim."""
