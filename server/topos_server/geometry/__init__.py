"""Mesh geometry shared by the models and pipelines: surface sampling, registration (similarity, closest points, NICP), pose canonicalisation, retopology, mesh readers."""
