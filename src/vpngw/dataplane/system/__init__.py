"""The operating system under the data plane: namespaces, links, routes, processes (``ip``)."""
