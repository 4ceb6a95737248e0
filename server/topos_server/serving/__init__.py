"""The gRPC side: the HeadGenerator servicer, the batching work queue, and starting/stopping a server."""
