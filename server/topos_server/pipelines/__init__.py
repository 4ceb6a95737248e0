"""Applications of the models: a mesh of any topology → reference topology (convert)."""
