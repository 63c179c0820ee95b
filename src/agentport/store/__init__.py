"""The model store: names, content-addressed blobs and manifests, the embedded default model."""
