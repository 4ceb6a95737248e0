"""TOPOS server side: assets, head model, face front-end, engines and the gRPC service (torch)."""
