"""TOPOS server side, packaged like the data flow (portrait → face front-end → engine → HeadResult):

- ``assets``     model files imported into the cache; ICT topology, head model, MediaPipe ↔ reference map
- ``face``       image decoding, face detection, 468/478 landmarks (the front-end)
- ``fit``        landmark fit of the morphable model, fit quality, debug overlay
- ``texture``    photo bake, fill, de-lighting, skin colour, regions, material maps, colour re-bake
- ``geometry``   surface sampling, registration/NICP, pose canonicalisation, retopology, mesh readers
- ``models``     networks (one file each) and their committed weights
- ``data``       synthetic training/evaluation data
- ``training``   training loops
- ``pipelines``  applications of the models (convert)
- ``engines``    classic (and next topos) behind the Engine interface
- ``serving``    gRPC servicer, work queue, server lifecycle
"""
