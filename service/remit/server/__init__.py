"""Stage 5, serve: the gRPC server, its interceptors and thin servicers."""
