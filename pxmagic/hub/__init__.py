"""The hub: multiplexes one set of client sockets over the engine kernels."""
