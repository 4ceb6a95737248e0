"""Model files and what is derived from them at import: the asset cache, the ICT reference topology, the morphable head model, the MediaPipe ↔ reference correspondence."""
